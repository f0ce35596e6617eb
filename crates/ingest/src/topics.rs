//! Topic names: the defaults come from `contracts/topics.json`, the one file the local stack, the compose
//! topic-init step and this binary all read, so a renamed topic cannot drift between them.

use serde::Deserialize;

const CONTRACT: &str = include_str!("../../../contracts/topics.json");

/// The four topics of DESIGN §2 this binary writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub trades: String,
    pub bars: String,
    pub companies: String,
    pub deadletter: String,
    pub gaps: String,
}

#[derive(Deserialize)]
struct Contract {
    topics: Vec<ContractTopic>,
}

#[derive(Deserialize)]
struct ContractTopic {
    name: String,
}

/// Contract names, found by their role prefix so a version bump (`.v2`) needs no code change.
pub fn contract_defaults() -> Topics {
    let contract: Contract =
        serde_json::from_str(CONTRACT).expect("contracts/topics.json is valid JSON");
    let find = |prefix: &str| {
        contract
            .topics
            .iter()
            .map(|t| t.name.clone())
            .find(|name| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("contracts/topics.json has no topic starting with {prefix}"))
    };
    Topics {
        trades: find("market.trades."),
        bars: find("market.bars.1m."),
        companies: find("reference.companies."),
        deadletter: find("market.deadletter."),
        gaps: find("market.gaps."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_names() {
        let topics = contract_defaults();
        assert_eq!(topics.trades, "market.trades.v1");
        assert_eq!(topics.bars, "market.bars.1m.v1");
        assert_eq!(topics.companies, "reference.companies.v1");
        assert_eq!(topics.deadletter, "market.deadletter.v1");
        assert_eq!(topics.gaps, "market.gaps.v1");
    }
}
