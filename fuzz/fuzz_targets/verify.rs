//! The verification core on arbitrary header values, bodies and clock readings.
//! Never panics; accepts exactly what Aghanim's recipe signs.
#![no_main]

use aghanim_webhook::{RejectionKind, Secret, Verifier};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-secret";

fn recipe(timestamp: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fuzz_target!(|input: &[u8]| {
    let [mode, timestamp_len, signature_len, now @ ..] = input else {
        return;
    };
    let (now_bytes, rest) = now.split_at(now.len().min(8));
    let mut clock = [0u8; 8];
    clock[..now_bytes.len()].copy_from_slice(now_bytes);
    let now = u64::from_le_bytes(clock);
    let (timestamp, rest) = rest.split_at(rest.len().min(usize::from(*timestamp_len) % 32));
    let (signature, body) = rest.split_at(rest.len().min(usize::from(*signature_len)));

    // Half the inputs carry the right signature, so the window logic is explored too.
    let correct = recipe(timestamp, body);
    let signature = if mode & 1 == 1 {
        correct.as_bytes()
    } else {
        signature
    };

    let mut verifier = Verifier::new(Secret::new(SECRET).unwrap());
    verifier = match mode >> 1 & 3 {
        0 => verifier.disable_tolerance(),
        tolerance => verifier.tolerance(std::time::Duration::from_secs(u64::from(tolerance) * 300)),
    };
    match verifier.verify(timestamp, signature, body, now) {
        Ok(verified) => {
            assert!(signature.eq_ignore_ascii_case(correct.as_bytes()));
            assert_eq!(
                std::str::from_utf8(timestamp)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                verified
            );
        }
        Err(rejection) => {
            if rejection.kind() == RejectionKind::TimestampOutsideTolerance {
                assert!(signature.eq_ignore_ascii_case(correct.as_bytes()));
            }
        }
    }
});
