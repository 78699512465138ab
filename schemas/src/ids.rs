//! Prefixed ids. Every id is `<prefix>_<32 hex chars of a UUIDv7>`, so ids sort in creation order
//! and a glance tells what kind of object an id names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Appends `bytes` to `out` as lower-case hex (two characters a byte), without allocating per
/// byte: digests become ids (fee ids) and lookup keys (API keys) on every request.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Wraps an id read from a path or body; any string is accepted (unknown ids are
            /// answered with 404 by the lookup, not rejected by their shape).
            pub fn from_raw(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A customer of the platform.
    CustomerId, "cust"
);
prefixed_id!(
    /// A product (all its versions share this id).
    ProductId, "prod"
);
prefixed_id!(
    /// One version of a product ("rate plan").
    ProductVersionId, "prv"
);
prefixed_id!(
    /// A price inside a product version.
    PriceId, "price"
);
prefixed_id!(
    /// A customer's subscription.
    SubscriptionId, "sub"
);
prefixed_id!(
    /// A vendor whose costs are attached to events.
    VendorId, "vnd"
);
prefixed_id!(
    /// A connected account (a platform's own sub-account).
    ConnectedAccountId, "acct"
);
prefixed_id!(
    /// A test clock.
    TestClockId, "clock"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        let mut out = "x_".to_string();
        push_hex(&mut out, &[0x00, 0x0f, 0xa0, 0xff]);
        assert_eq!(out, "x_000fa0ff");
    }

    #[test]
    fn ids_carry_their_prefix_and_sort_in_creation_order() {
        let a = CustomerId::generate();
        let b = CustomerId::generate();
        assert!(a.as_str().starts_with("cust_"));
        assert_eq!(a.as_str().len(), "cust_".len() + 32);
        assert!(a < b, "{a} should sort before {b}");
    }
}
