//! A DynamoDB table, as far as tozai uses one: items by key, each write conditional on the
//! item as it is at that moment (`attribute_not_exists`, `version = :v`).
//! A condition and its write are one atomic step, as in DynamoDB.

use std::collections::BTreeMap;

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    S(String),
    N(u64),
}

/// One item: attribute name to value.
pub type Item = BTreeMap<&'static str, Attr>;

/// Reads an attribute as a string.
pub fn s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name)? {
        Attr::S(s) => Some(s),
        Attr::N(_) => None,
    }
}

/// Reads an attribute as a number.
pub fn n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name)? {
        Attr::N(n) => Some(*n),
        Attr::S(_) => None,
    }
}

/// One region's table.
#[derive(Debug, Default)]
pub struct Table {
    items: BTreeMap<String, Item>,
}

impl Table {
    /// `GetItem` (strongly consistent).
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.get(key)
    }

    /// `PutItem` with a condition on the item as it is: `false`, and nothing written, when
    /// it does not hold (`ConditionalCheckFailedException`).
    pub fn put_if(
        &mut self,
        key: &str,
        item: Item,
        holds: impl FnOnce(Option<&Item>) -> bool,
    ) -> bool {
        if !holds(self.items.get(key)) {
            return false;
        }
        self.items.insert(key.to_owned(), item);
        true
    }

    /// `DeleteItem` with a condition.
    pub fn delete_if(&mut self, key: &str, holds: impl FnOnce(Option<&Item>) -> bool) -> bool {
        if !holds(self.items.get(key)) {
            return false;
        }
        self.items.remove(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_whose_condition_fails_changes_nothing() {
        let mut table = Table::default();
        let item = || Item::from([("version", Attr::N(1))]);
        assert!(table.put_if("k", item(), |c| c.is_none()));
        assert!(!table.put_if("k", Item::new(), |c| c.is_none()));
        assert_eq!(n(table.get("k").unwrap(), "version"), Some(1));
        assert!(!table.delete_if("k", |c| c.is_some_and(|c| s(c, "state").is_some())));
        assert!(
            table.put_if("k", Item::from([("state", Attr::S("x".into()))]), |c| c
                .is_some())
        );
        assert!(table.delete_if("k", |c| c.is_some_and(|c| s(c, "state") == Some("x"))));
        assert!(table.get("k").is_none());
    }
}
