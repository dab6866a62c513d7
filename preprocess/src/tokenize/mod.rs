//! `preprocess tokenize`: corpus to packed token shards (data-spec "Token shards").
mod args;
mod fingerprint;
mod inputs;
mod output;
mod pack;
mod reader;
mod run;
mod stream;
mod writer;

pub use args::{TokenizeArgs, TokenizeConfig};

/// Checks the flags, then tokenizes.
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    run::run(TokenizeConfig::try_from(args)?)
}
