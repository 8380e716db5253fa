//! Keyed references to fingerprint templates.
//!
//! A record names the template a finger matched as
//! `HMAC-SHA-256(template_key, "wuding/template-ref/v1\0" || template)`.
//! The server, which holds the template key, can tell which enrolled
//! template was used; a record on its own reveals nothing of the template.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::types::TemplateRef;

const CONTEXT: &[u8] = b"wuding/template-ref/v1\0";

/// The hospital's secret key for template references. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct TemplateKey(pub [u8; 32]);

impl fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TemplateKey(redacted)")
    }
}

/// The keyed reference to `template` (the module's characteristic file).
pub fn template_ref(key: &TemplateKey, template: &[u8]) -> TemplateRef {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(CONTEXT);
    mac.update(template);
    TemplateRef(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_depends_on_key_and_template() {
        let a = template_ref(&TemplateKey([1; 32]), b"template");
        assert_eq!(a, template_ref(&TemplateKey([1; 32]), b"template"));
        assert_ne!(a, template_ref(&TemplateKey([2; 32]), b"template"));
        assert_ne!(a, template_ref(&TemplateKey([1; 32]), b"templatf"));
    }

    #[test]
    fn debug_redacts_the_key() {
        assert_eq!(
            format!("{:?}", TemplateKey([9; 32])),
            "TemplateKey(redacted)"
        );
    }
}
