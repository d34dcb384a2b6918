//! The stored form of an object: the REST API shows every field (the
//! unmodified clients read each one), while the NSDB keeps a rule without
//! its unset clauses. A rule's condition has some 60 fields and a security
//! group's rule sets three or four, so the full form was six times the size
//! of what it says, in every commit, watch event and snapshot.
//!
//! Serde has no per-call options, so the choice is a thread-local flag that
//! [`stored_form`] raises while it serializes; fields marked
//! `skip_serializing_if = "crate::stored::unset"` consult it. Decoding needs
//! nothing: every such field has a default.

use std::cell::Cell;

thread_local! {
    static STORED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with objects serializing in their stored form.
pub fn stored_form<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STORED.set(self.0);
        }
    }
    let _restore = Restore(STORED.replace(true));
    f()
}

/// The JSON the NSDB stores for `o`.
pub fn encode<T: serde::Serialize>(o: &T) -> Vec<u8> {
    stored_form(|| serde_json::to_vec(o).expect("model objects serialize"))
}

/// Whether a field is left out: only in the stored form, and only at its default.
pub fn unset<T: Default + PartialEq>(v: &T) -> bool {
    STORED.get() && *v == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Condition, Rule, RuleType};
    use uuid::Uuid;

    #[test]
    fn a_stored_rule_keeps_only_what_is_set_and_decodes_to_the_same_rule() {
        let cond = Condition {
            dl_type: Some(0x0806),
            inv_dl_type: true,
            ..Default::default()
        };
        let r = Rule::new(Uuid::from_u128(7), Uuid::from_u128(9), RuleType::Drop, cond);
        let stored = encode(&r);
        let full = serde_json::to_vec(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["chainId", "dlType", "id", "invDlType", "position", "type"],
            "{v}"
        );
        assert!(
            full.len() > 5 * stored.len(),
            "{} vs {}",
            full.len(),
            stored.len()
        );
        assert_eq!(serde_json::from_slice::<Rule>(&stored).unwrap(), r);
        assert_eq!(serde_json::from_slice::<Rule>(&full).unwrap(), r);
        // Outside stored_form, and after it, every field is there again.
        let after: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert!(after.get("nwSrcAddress").is_some() && after.get("natTargets").is_some());
    }
}
