"""What a studio starts from in Python: Aghanim's webhook template, reconstructed from
its documentation (FastAPI). It reads the two headers with a dictionary lookup (a
missing header is a 500), compares the HMAC with hmac.compare_digest, answers 403 on a
mismatch, checks no timestamp age and sets no body limit, then dispatches on
event_type. Used only as the baseline of scripts/load-compare.py.

    AGHANIM_WEBHOOK_SECRET=... uvicorn aghanim_template:app --port 8102
"""
import hashlib
import hmac
import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET = os.environ["AGHANIM_WEBHOOK_SECRET"]
app = FastAPI()


def verify_signature(secret: str, data: bytes, timestamp: str, signature: str) -> bool:
    payload = f"{timestamp}.{data.decode('utf-8')}".encode("utf-8")
    expected = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@app.post("/webhook")
async def webhook(request: Request):
    data = await request.body()
    timestamp = request.headers["x-aghanim-signature-timestamp"]
    signature = request.headers["x-aghanim-signature"]
    if not verify_signature(SECRET, data, timestamp, signature):
        return JSONResponse({"status": "error", "code": "invalid_signature",
                             "message": "Invalid signature"}, status_code=403)
    event = json.loads(data)
    if event["event_type"] in ("item.add", "item.remove", "player.verify"):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "error", "code": "unknown_event_type",
                         "message": "Unknown event type"}, status_code=400)
