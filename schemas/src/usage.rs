//! Usage events and the fees computed for them, as they travel on the wire.

use crate::catalog::UsageType;
use crate::{Decimal, Timestamp};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A value of an event's `data`: a string, a boolean or an exact number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataValue {
    Str(String),
    Bool(bool),
    Num(Decimal),
}

impl DataValue {
    /// The number, if this is one (volume fields).
    pub fn as_number(&self) -> Option<Decimal> {
        match self {
            DataValue::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether this value, compared as a string, equals `text` (dimension matching).
    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            DataValue::Str(s) => s == text,
            DataValue::Bool(b) => text == if *b { "true" } else { "false" },
            // The number's own text: `1024` matches "1024", not "1024.0".
            DataValue::Num(n) => n.to_string() == text,
        }
    }
}

impl fmt::Display for DataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataValue::Str(s) => f.write_str(s),
            DataValue::Bool(b) => write!(f, "{b}"),
            DataValue::Num(n) => write!(f, "{n}"),
        }
    }
}

/// Parses a JSON number's text exactly, including exponent notation (`1e-06`).
pub fn parse_number(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).ok().or_else(|| Decimal::from_scientific(text).ok())
}

impl Serialize for DataValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DataValue::Str(v) => s.serialize_str(v),
            DataValue::Bool(v) => s.serialize_bool(*v),
            DataValue::Num(v) => Serialize::serialize(v, s),
        }
    }
}

impl<'de> Deserialize<'de> for DataValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(DataValue::Str(s)),
            Value::Bool(b) => Ok(DataValue::Bool(b)),
            Value::Number(n) => parse_number(n.as_str())
                .map(DataValue::Num)
                .ok_or_else(|| D::Error::custom(format_args!("number {n} is out of range"))),
            other => Err(D::Error::custom(format_args!(
                "data values must be strings, booleans or numbers, not {}",
                match other {
                    Value::Null => "null",
                    Value::Array(_) => "an array",
                    _ => "an object",
                }
            ))),
        }
    }
}

/// A cost a vendor charged for producing the event (`semantics.md` §7).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CostData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, DataValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_volume: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<Decimal>,
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// One usage event as sent by a platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageEvent {
    pub id: String,
    pub event_type: String,
    pub occurred_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, DataValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<Vec<CostData>>,
}

/// What a fee charged and why: the price, the value applied and the amount. Shared by both wire
/// shapes of a fee.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeeBreakdown {
    pub price_id: String,
    pub price_name: String,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<BTreeMap<String, String>>,
    pub usage_type: UsageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_volume: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub amount: Decimal,
}

/// A fee as `simulate-usage` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalculatedFee {
    pub usage_id: String,
    pub event_type: String,
    #[serde(flatten)]
    pub fee: FeeBreakdown,
}

/// A fee as it is posted and shown on an event (`GET /events/{id}`).
///
/// Read through [`FlatEventFee`]: serde's `flatten` buffers every field of a flattened struct into
/// an intermediate tree before decoding it, which cost the ledger writer ~8% of its time (every
/// `ledger.input` record carries its fees). Written with `flatten`, which costs nothing extra.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "FlatEventFee")]
pub struct EventFee {
    pub id: String,
    pub product_id: String,
    pub product_code: String,
    pub product_version: u32,
    #[serde(flatten)]
    pub fee: FeeBreakdown,
}

/// [`EventFee`] as it is read: the same fields, declared flat.
#[derive(Deserialize)]
struct FlatEventFee {
    id: String,
    product_id: String,
    product_code: String,
    product_version: u32,
    price_id: String,
    price_name: String,
    currency: String,
    #[serde(default)]
    dimensions: Option<BTreeMap<String, String>>,
    usage_type: UsageType,
    #[serde(default)]
    volume_field: Option<String>,
    #[serde(default)]
    input_volume: Option<Decimal>,
    #[serde(default)]
    unit_price: Option<Decimal>,
    #[serde(default)]
    volume_rate: Option<Decimal>,
    #[serde(default)]
    package_size: Option<Decimal>,
    #[serde(default)]
    description: Option<String>,
    amount: Decimal,
}

impl From<FlatEventFee> for EventFee {
    fn from(f: FlatEventFee) -> Self {
        EventFee {
            id: f.id,
            product_id: f.product_id,
            product_code: f.product_code,
            product_version: f.product_version,
            fee: FeeBreakdown {
                price_id: f.price_id,
                price_name: f.price_name,
                currency: f.currency,
                dimensions: f.dimensions,
                usage_type: f.usage_type,
                volume_field: f.volume_field,
                input_volume: f.input_volume,
                unit_price: f.unit_price,
                volume_rate: f.volume_rate,
                package_size: f.package_size,
                description: f.description,
                amount: f.amount,
            },
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct SimulateUsageRequest {
    pub events: Vec<UsageEvent>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimulateUsageResponse {
    pub fees: Vec<CalculatedFee>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_numbers_are_read_and_written_exactly() {
        let text = r#"{"tokens":2353,"rate":0.1,"tiny":1e-06,"model":"gpt","stream":true}"#;
        let data: BTreeMap<String, DataValue> = serde_json::from_str(text).unwrap();
        assert_eq!(data["tokens"], DataValue::Num(Decimal::from(2353)));
        assert_eq!(data["tiny"].as_number(), Decimal::from_str("0.000001").ok());
        let written = serde_json::to_string(&data).unwrap();
        assert!(written.contains(r#""rate":0.1"#), "{written}");
    }

    #[test]
    fn event_data_rejects_nulls_arrays_and_objects() {
        for bad in [r#"{"a":null}"#, r#"{"a":[1]}"#, r#"{"a":{"b":1}}"#] {
            assert!(serde_json::from_str::<BTreeMap<String, DataValue>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_fees_read_back_exactly() {
        let text = r#"{"id":"fee_1","product_id":"prod_1","product_code":"p","product_version":2,"price_id":"price_1","price_name":"n","currency":"USD","usage_type":"volume","input_volume":2353,"volume_rate":1.25,"package_size":1000000,"amount":0.00294125}"#;
        let fee: EventFee = serde_json::from_str(text).unwrap();
        assert_eq!(fee.fee.amount, Decimal::from_str("0.00294125").unwrap());
        assert_eq!(serde_json::to_string(&fee).unwrap(), text);
    }

    #[test]
    fn every_field_of_an_event_fee_survives_a_round_trip() {
        let d = |s: &str| Some(Decimal::from_str(s).unwrap());
        let fee = EventFee {
            id: "fee_1".into(),
            product_id: "prod_1".into(),
            product_code: "p".into(),
            product_version: 3,
            fee: FeeBreakdown {
                price_id: "price_1".into(),
                price_name: "n".into(),
                currency: "USD".into(),
                dimensions: Some(BTreeMap::from([("model".into(), "gpt".into())])),
                usage_type: UsageType::Unit,
                volume_field: Some("tokens".into()),
                input_volume: d("2353"),
                unit_price: d("0.5"),
                volume_rate: d("1.25"),
                package_size: d("1000"),
                description: Some("why".into()),
                amount: Decimal::from_str("0.00294125").unwrap(),
            },
        };
        let text = serde_json::to_string(&fee).unwrap();
        assert_eq!(serde_json::from_str::<EventFee>(&text).unwrap(), fee, "{text}");
    }

    #[test]
    fn dimension_values_compare_as_strings() {
        assert!(DataValue::Str("gpt-4".into()).matches_text("gpt-4"));
        assert!(DataValue::Bool(true).matches_text("true"));
        assert!(DataValue::Num(Decimal::from(1024)).matches_text("1024"));
        assert!(!DataValue::Num(Decimal::from(1024)).matches_text("1024.0"));
        assert!(!DataValue::Str("a".into()).matches_text("b"));
    }
}
