//! The shape of an HL7 FHIR R4 `RiskAssessment`, checked element by element against the
//! R4 structure (https://hl7.org/fhir/R4/riskassessment.html): every element known, with
//! its type and cardinality, the choice types, the required elements, the status value
//! set, and invariants ras-1 and ras-2 (probabilities as percentages, at most 100).

use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Code(&'static [&'static str]),
    DateTime,
    Decimal,
    Identifier,
    Reference,
    CodeableConcept,
    Coding,
    Annotation,
    Meta,
    Range,
    Period,
    Prediction,
    Any,
}

/// (name, type, min, max; 0 = unbounded)
type Element = (&'static str, Ty, usize, usize);

const STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];

const RISK_ASSESSMENT: &[Element] = &[
    ("resourceType", Ty::Code(&["RiskAssessment"]), 1, 1),
    ("id", Ty::Str, 0, 1),
    ("meta", Ty::Meta, 0, 1),
    ("implicitRules", Ty::Str, 0, 1),
    ("language", Ty::Str, 0, 1),
    ("text", Ty::Any, 0, 1),
    ("contained", Ty::Any, 0, 0),
    ("extension", Ty::Any, 0, 0),
    ("modifierExtension", Ty::Any, 0, 0),
    ("identifier", Ty::Identifier, 0, 0),
    ("basedOn", Ty::Reference, 0, 1),
    ("parent", Ty::Reference, 0, 1),
    ("status", Ty::Code(STATUS), 1, 1),
    ("method", Ty::CodeableConcept, 0, 1),
    ("code", Ty::CodeableConcept, 0, 1),
    ("subject", Ty::Reference, 1, 1),
    ("encounter", Ty::Reference, 0, 1),
    ("occurrenceDateTime", Ty::DateTime, 0, 1),
    ("occurrencePeriod", Ty::Period, 0, 1),
    ("condition", Ty::Reference, 0, 1),
    ("performer", Ty::Reference, 0, 1),
    ("reasonCode", Ty::CodeableConcept, 0, 0),
    ("reasonReference", Ty::Reference, 0, 0),
    ("basis", Ty::Reference, 0, 0),
    ("prediction", Ty::Prediction, 0, 0),
    ("mitigation", Ty::Str, 0, 1),
    ("note", Ty::Annotation, 0, 0),
];

const PREDICTION: &[Element] = &[
    ("id", Ty::Str, 0, 1),
    ("extension", Ty::Any, 0, 0),
    ("modifierExtension", Ty::Any, 0, 0),
    ("outcome", Ty::CodeableConcept, 0, 1),
    ("probabilityDecimal", Ty::Decimal, 0, 1),
    ("probabilityRange", Ty::Range, 0, 1),
    ("qualitativeRisk", Ty::CodeableConcept, 0, 1),
    ("relativeRisk", Ty::Decimal, 0, 1),
    ("whenPeriod", Ty::Period, 0, 1),
    ("whenRange", Ty::Range, 0, 1),
    ("rationale", Ty::Str, 0, 1),
];

const IDENTIFIER: &[Element] = &[
    (
        "use",
        Ty::Code(&["usual", "official", "temp", "secondary", "old"]),
        0,
        1,
    ),
    ("type", Ty::CodeableConcept, 0, 1),
    ("system", Ty::Str, 0, 1),
    ("value", Ty::Str, 0, 1),
    ("period", Ty::Period, 0, 1),
    ("assigner", Ty::Reference, 0, 1),
];

const REFERENCE: &[Element] = &[
    ("reference", Ty::Str, 0, 1),
    ("type", Ty::Str, 0, 1),
    ("identifier", Ty::Identifier, 0, 1),
    ("display", Ty::Str, 0, 1),
];

const CODEABLE_CONCEPT: &[Element] = &[("coding", Ty::Coding, 0, 0), ("text", Ty::Str, 0, 1)];

const CODING: &[Element] = &[
    ("system", Ty::Str, 0, 1),
    ("version", Ty::Str, 0, 1),
    ("code", Ty::Str, 0, 1),
    ("display", Ty::Str, 0, 1),
    ("userSelected", Ty::Any, 0, 1),
];

const ANNOTATION: &[Element] = &[
    ("authorString", Ty::Str, 0, 1),
    ("authorReference", Ty::Reference, 0, 1),
    ("time", Ty::DateTime, 0, 1),
    ("text", Ty::Str, 1, 1),
];

const META: &[Element] = &[
    ("versionId", Ty::Str, 0, 1),
    ("lastUpdated", Ty::DateTime, 0, 1),
    ("source", Ty::Str, 0, 1),
    ("profile", Ty::Str, 0, 0),
];

const PERIOD: &[Element] = &[("start", Ty::DateTime, 0, 1), ("end", Ty::DateTime, 0, 1)];

const RANGE: &[Element] = &[("low", Ty::Any, 0, 1), ("high", Ty::Any, 0, 1)];

/// Checks `r` is a valid R4 RiskAssessment shape; the first problem found, with its path.
pub fn check_risk_assessment(r: &Value) -> Result<(), String> {
    object(r, "RiskAssessment", RISK_ASSESSMENT)?;
    // Choice types: one of each at most.
    let o = r.as_object().ok_or("not an object")?;
    if o.contains_key("occurrenceDateTime") && o.contains_key("occurrencePeriod") {
        return Err("occurrence[x]: two choices given".into());
    }
    for (i, p) in o
        .get("prediction")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("RiskAssessment.prediction[{i}]");
        let p = p.as_object().ok_or(format!("{path}: not an object"))?;
        if p.contains_key("probabilityDecimal") && p.contains_key("probabilityRange") {
            return Err(format!("{path}.probability[x]: two choices given"));
        }
        if let Some(d) = p.get("probabilityDecimal").and_then(Value::as_f64) {
            if !(0.0..=100.0).contains(&d) {
                return Err(format!(
                    "{path}.probabilityDecimal: ras-2 wants <= 100, got {d}"
                ));
            }
        }
    }
    Ok(())
}

fn object(v: &Value, path: &str, elements: &[Element]) -> Result<(), String> {
    let o: &Map<String, Value> = v.as_object().ok_or(format!("{path}: not an object"))?;
    if o.is_empty() {
        return Err(format!("{path}: empty object"));
    }
    for key in o.keys() {
        if !elements.iter().any(|(n, ..)| n == key) {
            return Err(format!("{path}.{key}: not an element of {path}"));
        }
    }
    for &(name, ty, min, max) in elements {
        let p = format!("{path}.{name}");
        let values: Vec<&Value> = match o.get(name) {
            None => Vec::new(),
            Some(Value::Array(a)) if max != 1 => a.iter().collect(),
            Some(Value::Array(_)) => return Err(format!("{p}: an array where one value goes")),
            Some(_) if max != 1 => return Err(format!("{p}: repeats, so must be an array")),
            Some(v) => vec![v],
        };
        if values.len() < min || (max != 0 && values.len() > max) {
            return Err(format!(
                "{p}: {} values, cardinality {min}..{max}",
                values.len()
            ));
        }
        for v in values {
            value(v, &p, ty)?;
        }
    }
    Ok(())
}

fn value(v: &Value, p: &str, ty: Ty) -> Result<(), String> {
    match ty {
        Ty::Str => v
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(drop)
            .ok_or(format!("{p}: not a non-empty string")),
        Ty::Code(allowed) => v
            .as_str()
            .filter(|s| allowed.contains(s))
            .map(drop)
            .ok_or(format!("{p}: {v} is not one of {allowed:?}")),
        Ty::DateTime => {
            let s = v.as_str().ok_or(format!("{p}: not a string"))?;
            let ok = chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
            ok.then_some(())
                .ok_or(format!("{p}: `{s}` is not a FHIR dateTime"))
        }
        Ty::Decimal => v
            .as_f64()
            .filter(|d| d.is_finite())
            .map(drop)
            .ok_or(format!("{p}: not a decimal")),
        Ty::Identifier => object(v, p, IDENTIFIER),
        Ty::Reference => object(v, p, REFERENCE),
        Ty::CodeableConcept => object(v, p, CODEABLE_CONCEPT),
        Ty::Coding => object(v, p, CODING),
        Ty::Annotation => object(v, p, ANNOTATION),
        Ty::Meta => object(v, p, META),
        Ty::Period => object(v, p, PERIOD),
        Ty::Range => object(v, p, RANGE),
        Ty::Prediction => object(v, p, PREDICTION),
        Ty::Any => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checker_refuses_what_r4_refuses() {
        let good = json!({"resourceType": "RiskAssessment", "status": "final",
            "subject": {"reference": "Patient/1"},
            "prediction": [{"probabilityDecimal": 12.5}]});
        assert_eq!(check_risk_assessment(&good), Ok(()));
        let mut bad = good.clone();
        bad["prediction"][0]["probabilityDecimal"] = json!(0.4 * 1000.0);
        assert!(check_risk_assessment(&bad).unwrap_err().contains("ras-2"));
        let mut bad = good.clone();
        bad["status"] = json!("open");
        assert!(check_risk_assessment(&bad).is_err());
        let mut bad = good.clone();
        bad.as_object_mut().map(|o| o.remove("subject"));
        assert!(check_risk_assessment(&bad).unwrap_err().contains("subject"));
        let mut bad = good.clone();
        bad["prediction"][0]["rationale"] = json!(["a"]);
        assert!(check_risk_assessment(&bad).is_err());
        let mut bad = good;
        bad["probability"] = json!(1);
        assert!(check_risk_assessment(&bad)
            .unwrap_err()
            .contains("not an element"));
    }
}
