//! Properties of the layer over arbitrary input (proptest): framing never changes the
//! verdict, any single-bit change is caught, hostile header bytes never panic or pass,
//! and every tolerance holds exactly at its edges.

use crate::common;

use aghanim_webhook::{sign, RejectionKind, Secret, Verifier, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use bytes::Bytes;
use common::{layer, run, stack, Frames, NOW, SECRET};
use http::{HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

fn status_of(body: Frames, timestamp: &[u8], signature: &[u8]) -> Option<StatusCode> {
    let mut request = Request::post("/webhook").body(body).ok()?;
    request
        .headers_mut()
        .insert(&TIMESTAMP_HEADER, HeaderValue::from_bytes(timestamp).ok()?);
    request
        .headers_mut()
        .insert(&SIGNATURE_HEADER, HeaderValue::from_bytes(signature).ok()?);
    let (service, _) = stack(layer());
    Some(run(service.oneshot(request)).expect("infallible").status())
}

/// Cut points that split `len` bytes into frames (possibly empty ones).
fn splits(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..8).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    })
}

fn frames_at(body: &[u8], cuts: &[usize]) -> Frames {
    let mut start = 0;
    let mut chunks = Vec::new();
    for &cut in cuts.iter().chain([&body.len()]) {
        chunks.push(Bytes::copy_from_slice(&body[start..cut]));
        start = cut;
    }
    Frames::data(chunks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn framing_never_changes_the_verdict(
        (body, cuts) in prop::collection::vec(any::<u8>(), 0..2048)
            .prop_flat_map(|body| { let len = body.len(); (Just(body), splits(len)) }),
        signed_body in prop::bool::ANY,
    ) {
        let timestamp = NOW.to_string();
        // Half the cases sign the body itself, half sign something else.
        let signature = if signed_body { sign(SECRET, NOW, &body) } else { sign(SECRET, NOW, b"other") };
        let whole = status_of(Frames::data([body.clone()]), timestamp.as_bytes(), signature.as_bytes());
        let split = status_of(frames_at(&body, &cuts), timestamp.as_bytes(), signature.as_bytes());
        prop_assert_eq!(whole, split);
        let expected = if signed_body || body == b"other" { StatusCode::OK } else { StatusCode::FORBIDDEN };
        prop_assert_eq!(whole, Some(expected));
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        body in prop::collection::vec(any::<u8>(), 1..512),
        part in 0..3usize,
        position in any::<prop::sample::Index>(),
        bit in 0..8u32,
    ) {
        let mut timestamp = NOW.to_string().into_bytes();
        let mut signature = sign(SECRET, NOW, &body).into_bytes();
        let mut body = body;
        let target = match part { 0 => &mut body, 1 => &mut timestamp, _ => &mut signature };
        let index = position.index(target.len());
        // Bit 5 of a hex letter changes only its case: the same signature, accepted by design.
        prop_assume!(!(part == 2 && bit == 5 && target[index].is_ascii_alphabetic()));
        target[index] ^= 1 << bit;
        // Some flips make bytes no header can carry; those never reach a server.
        if let Some(status) = status_of(Frames::data([body]), &timestamp, &signature) {
            prop_assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn arbitrary_header_bytes_never_panic_and_never_pass(
        timestamp in prop::collection::vec(any::<u8>(), 0..40),
        signature in prop::collection::vec(any::<u8>(), 0..100),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let verifier = Verifier::new(Secret::new(SECRET).expect("secret"));
        let verdict = verifier.verify(&timestamp, &signature, &body, NOW);
        prop_assert!(verdict.is_err());
        if let Some(status) = status_of(Frames::data([body]), &timestamp, &signature) {
            prop_assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn hex_looking_signatures_never_pass(signature in "[0-9a-fA-F]{64}", timestamp in any::<u64>()) {
        let verifier = Verifier::new(Secret::new(SECRET).expect("secret")).disable_tolerance();
        let verdict = verifier.verify(timestamp.to_string().as_bytes(), signature.as_bytes(), b"{}", NOW);
        prop_assert_eq!(verdict.map_err(|rejection| rejection.kind()), Err(RejectionKind::SignatureMismatch));
    }

    #[test]
    fn every_tolerance_holds_exactly_at_its_edges(tolerance in 0..=u64::MAX / 2, now in any::<u64>()) {
        let verifier = Verifier::new(Secret::new(SECRET).expect("secret"))
            .tolerance(std::time::Duration::from_secs(tolerance));
        let check = |timestamp: u64| {
            let signature = sign(SECRET, timestamp, "{}");
            verifier.verify(timestamp.to_string().as_bytes(), signature.as_bytes(), b"{}", now)
        };
        for edge in [now.checked_sub(tolerance), now.checked_add(tolerance)].into_iter().flatten() {
            prop_assert_eq!(check(edge), Ok(edge));
        }
        for beyond in [now.checked_sub(tolerance).and_then(|t| t.checked_sub(1)),
                       now.checked_add(tolerance).and_then(|t| t.checked_add(1))].into_iter().flatten() {
            prop_assert_eq!(
                check(beyond).map_err(|rejection| rejection.kind()),
                Err(RejectionKind::TimestampOutsideTolerance)
            );
        }
    }
}
