//! The three Hugging Face model classes this crate reads and writes.
use anyhow::bail;

/// A Hugging Face model class (the `architectures` entry of `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// ELECTRA generator: `electra.*`, `generator_predictions.*`, `generator_lm_head.*`.
    ElectraForMaskedLM,
    /// BERT masked LM: `bert.*`, `cls.predictions.*`.
    BertForMaskedLM,
    /// ELECTRA discriminator: `electra.*`, `discriminator_predictions.*`.
    ElectraForPreTraining,
}

impl Architecture {
    /// All supported classes.
    pub const ALL: [Architecture; 3] = [
        Architecture::ElectraForMaskedLM,
        Architecture::BertForMaskedLM,
        Architecture::ElectraForPreTraining,
    ];

    /// The class name as transformers spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Architecture::ElectraForMaskedLM => "ElectraForMaskedLM",
            Architecture::BertForMaskedLM => "BertForMaskedLM",
            Architecture::ElectraForPreTraining => "ElectraForPreTraining",
        }
    }

    /// Parses a class name (exact spelling of transformers).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match Self::ALL.iter().find(|a| a.as_str() == s) {
            Some(a) => Ok(*a),
            None => bail!(
                "unsupported architecture {s:?}: expected one of ElectraForMaskedLM, \
                 BertForMaskedLM, ElectraForPreTraining"
            ),
        }
    }

    /// The `model_type` of `config.json` for this class.
    pub fn model_type(&self) -> &'static str {
        match self {
            Architecture::BertForMaskedLM => "bert",
            _ => "electra",
        }
    }

    /// The attribute name of the encoder inside the model (`electra` or `bert`).
    pub fn base_prefix(&self) -> &'static str {
        self.model_type()
    }

    /// Whether this class is a masked language model.
    pub fn is_masked_lm(&self) -> bool {
        !matches!(self, Architecture::ElectraForPreTraining)
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_names() {
        for a in Architecture::ALL {
            assert_eq!(Architecture::parse(a.as_str()).unwrap(), a);
        }
        let err = Architecture::parse("RobertaForMaskedLM").unwrap_err();
        assert!(err.to_string().contains("RobertaForMaskedLM"));
    }
}
