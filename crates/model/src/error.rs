use serde::Serialize;

/// One rejected property, reported to clients as MidoNet's bean-validation
/// `violations` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub property: String,
    pub message: String,
}

/// An object that failed validation: the list of what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|v| format!("{}: {}", v.property, v.message)).collect::<Vec<_>>().join("; "))]
pub struct Invalid(pub Vec<Violation>);

impl Invalid {
    pub fn one(property: &str, message: impl Into<String>) -> Self {
        Invalid(vec![Violation {
            property: property.into(),
            message: message.into(),
        }])
    }
}

/// Collects violations while an object is checked field by field.
#[derive(Default)]
pub struct Checker(Vec<Violation>);

impl Checker {
    pub fn fail(&mut self, property: &str, message: impl Into<String>) {
        self.0.push(Violation {
            property: property.into(),
            message: message.into(),
        });
    }
    pub fn require<T>(&mut self, property: &str, v: &Option<T>) {
        if v.is_none() {
            self.fail(property, "may not be null");
        }
    }
    pub fn range(&mut self, property: &str, v: i64, lo: i64, hi: i64) {
        if v < lo || v > hi {
            self.fail(property, format!("must be between {lo} and {hi}, got {v}"));
        }
    }
    pub fn opt_range(&mut self, property: &str, v: Option<i64>, lo: i64, hi: i64) {
        if let Some(v) = v {
            self.range(property, v, lo, hi);
        }
    }
    pub fn len(&mut self, property: &str, v: &Option<String>, lo: usize, hi: usize) {
        let n = v.as_deref().map(str::len).unwrap_or(0);
        if v.is_some() && (n < lo || n > hi) {
            self.fail(property, format!("size must be between {lo} and {hi}"));
        } else if v.is_none() && lo > 0 {
            self.fail(property, "may not be null");
        }
    }
    pub fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.0))
        }
    }
}
