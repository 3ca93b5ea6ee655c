//! The org's records and their indexes, and the undo journal of all-or-none operations.
//!
//! Records are immutable snapshots (`Arc<Record>`): a write replaces the record, so a query
//! locator keeps the records as they were when the query ran without copying them. Indexes:
//!
//! - by id (exact) and, per object, every record in creation order;
//! - for SOQL, the live records of an object by the value of an indexed field (`Id` on every
//!   object, the routing row's `Case__c` and `Status__c`, the `ParentId` of comments and
//!   emails), keyed like SOQL's `=` compares: strings case-insensitively, `null` on its own.
//!
//! [`Store::candidates`] turns a WHERE clause into the smallest set of records it can come from;
//! the caller still evaluates the whole clause on each of them, so the SOQL semantics do not
//! depend on which fields are indexed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::org::Record;
use crate::schema::{COMMENT_OBJ, EMAIL_OBJ, PUSHTOPIC_OBJ, ROW_OBJ};
use crate::soql::{CmpOp, Expr, SValue};

/// Creation number of a record (1, 2, …), its slot in the store plus one.
pub(crate) type Seq = u64;

/// Indexed fields besides `Id` (indexed on every object).
const INDEXED: &[(&str, &str)] = &[
    (ROW_OBJ, "Case__c"),
    (ROW_OBJ, "Status__c"),
    (COMMENT_OBJ, "ParentId"),
    (EMAIL_OBJ, "ParentId"),
];

fn indexed_fields(object: &str) -> impl Iterator<Item = &'static str> + '_ {
    std::iter::once("Id").chain(
        INDEXED
            .iter()
            .filter(move |(o, _)| *o == object)
            .map(|(_, f)| *f),
    )
}

fn is_indexed(object: &str, field: &str) -> bool {
    indexed_fields(object).any(|f| f == field)
}

/// An index key: what SOQL `=` considers equal is one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Text(String),
}

/// The key of a stored value; `None` for a value no string literal can equal (never indexed).
fn stored_key(v: Option<&Value>) -> Option<Key> {
    match v {
        None | Some(Value::Null) => Some(Key::Null),
        Some(Value::String(s)) => Some(Key::Text(s.to_lowercase())),
        Some(_) => None,
    }
}

/// The key of a bound SOQL literal; `None` when it cannot be looked up.
fn literal_key(v: &SValue) -> Option<Key> {
    match v {
        SValue::Null => Some(Key::Null),
        SValue::Str(s) => Some(Key::Text(s.to_lowercase())),
        _ => None,
    }
}

/// How to undo one change.
enum Undo {
    Inserted(Seq),
    Replaced(Arc<Record>),
    Removed(Arc<Record>),
}

#[derive(Default)]
pub(crate) struct Store {
    slots: Vec<Option<Arc<Record>>>,
    by_id: HashMap<String, Seq>,
    by_object: HashMap<&'static str, BTreeSet<Seq>>,
    index: HashMap<(&'static str, &'static str), HashMap<Key, BTreeSet<Seq>>>,
    /// While an all-or-none operation runs: how to undo what it did, in order.
    journal: Option<Vec<Undo>>,
    /// Changes whenever a PushTopic record changes (including by an undo).
    topics_version: u64,
}

impl Store {
    pub fn get(&self, seq: Seq) -> Option<&Arc<Record>> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.slots.get(i)?.as_ref()
    }

    /// The record with exactly this (18-character) id, deleted or not.
    pub fn by_id(&self, id: &str) -> Option<&Arc<Record>> {
        self.by_id.get(id).and_then(|&seq| self.get(seq))
    }

    /// Every record of `object` (deleted ones too), in creation order.
    pub fn all(&self, object: &str) -> impl DoubleEndedIterator<Item = &Arc<Record>> + '_ {
        self.by_object
            .get(object)
            .into_iter()
            .flatten()
            .filter_map(|&seq| self.get(seq))
    }

    /// The live records of `object`, in creation order.
    pub fn live(&self, object: &str) -> impl DoubleEndedIterator<Item = &Arc<Record>> + '_ {
        self.all(object).filter(|r| !r.deleted)
    }

    pub fn topics_version(&self) -> u64 {
        self.topics_version
    }

    fn index_record(&mut self, r: &Record) {
        if r.deleted {
            return;
        }
        for field in indexed_fields(r.object.name) {
            if let Some(key) = stored_key(r.fields.get(field)) {
                self.index
                    .entry((r.object.name, field))
                    .or_default()
                    .entry(key)
                    .or_default()
                    .insert(r.seq);
            }
        }
    }

    fn unindex_record(&mut self, r: &Record) {
        if r.deleted {
            return;
        }
        for field in indexed_fields(r.object.name) {
            let Some(key) = stored_key(r.fields.get(field)) else {
                continue;
            };
            if let Some(keys) = self.index.get_mut(&(r.object.name, field))
                && let Some(seqs) = keys.get_mut(&key)
            {
                seqs.remove(&r.seq);
                if seqs.is_empty() {
                    keys.remove(&key);
                }
            }
        }
    }

    fn touched(&mut self, r: &Record) {
        if r.object.name == PUSHTOPIC_OBJ {
            self.topics_version += 1;
        }
    }

    fn log(&mut self, undo: Undo) {
        if let Some(j) = &mut self.journal {
            j.push(undo);
        }
    }

    /// Stores a new record; its `seq` must be the next one.
    pub fn insert(&mut self, r: Record) {
        let seq = r.seq;
        let slot = usize::try_from(seq.saturating_sub(1)).unwrap_or(usize::MAX);
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, None);
        }
        self.index_record(&r);
        self.touched(&r);
        self.by_id.insert(r.id().to_owned(), seq);
        self.by_object.entry(r.object.name).or_default().insert(seq);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Arc::new(r));
        }
        self.log(Undo::Inserted(seq));
    }

    /// Replaces a stored record by a new version of it (same `seq`).
    pub fn replace(&mut self, r: Record) {
        let Some(old) = self.get(r.seq).cloned() else {
            return;
        };
        let same_keys = old.deleted == r.deleted
            && indexed_fields(r.object.name).all(|f| old.fields.get(f) == r.fields.get(f));
        if !same_keys {
            self.unindex_record(&old);
            self.index_record(&r);
        }
        self.touched(&r);
        let slot = usize::try_from(r.seq.saturating_sub(1)).unwrap_or(usize::MAX);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Arc::new(r));
        }
        self.log(Undo::Replaced(old));
    }

    /// Forgets a record for good (PushTopics at a sandbox refresh).
    pub fn remove(&mut self, seq: Seq) -> Option<Arc<Record>> {
        let old = self.get(seq).cloned()?;
        self.unindex_record(&old);
        self.touched(&old);
        self.by_id.remove(old.id());
        if let Some(set) = self.by_object.get_mut(old.object.name) {
            set.remove(&seq);
        }
        let slot = usize::try_from(seq.saturating_sub(1)).unwrap_or(usize::MAX);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
        self.log(Undo::Removed(old.clone()));
        Some(old)
    }

    /// Starts recording how to undo every change (an all-or-none operation).
    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Keeps every change since [`Store::begin`].
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes every change since [`Store::begin`], newest first.
    pub fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Inserted(seq) => {
                    self.remove(seq);
                    // The slot was the newest one: give it back.
                    let len = usize::try_from(seq).unwrap_or(usize::MAX);
                    if self.slots.len() == len {
                        self.slots.pop();
                    }
                }
                Undo::Replaced(old) => self.replace(Arc::unwrap_or_clone(old)),
                Undo::Removed(old) => self.insert(Arc::unwrap_or_clone(old)),
            }
        }
    }

    fn key_set(&self, object: &str, field: &str, value: &SValue) -> Option<&BTreeSet<Seq>> {
        let key = literal_key(value)?;
        self.index
            .get(&(index_object(object)?, index_field(object, field)?))?
            .get(&key)
    }

    /// How many records an indexed condition can come from (`None`: not indexable).
    fn estimate(&self, object: &str, e: &Expr) -> Option<usize> {
        match e {
            Expr::Cmp {
                field,
                op: CmpOp::Eq,
                value,
            } if is_indexed(object, field) => {
                literal_key(value)?;
                Some(self.key_set(object, field, value).map_or(0, BTreeSet::len))
            }
            Expr::In {
                field,
                negated: false,
                values,
            } if is_indexed(object, field) => values.iter().try_fold(0, |n, v| {
                literal_key(v)?;
                Some(n + self.key_set(object, field, v).map_or(0, BTreeSet::len))
            }),
            Expr::And(items) => items.iter().filter_map(|i| self.estimate(object, i)).min(),
            Expr::Or(items) => items
                .iter()
                .try_fold(0, |n, i| Some(n + self.estimate(object, i)?)),
            _ => None,
        }
    }

    /// The candidate records of an indexable condition (`estimate` is `Some`).
    fn source<'a>(&'a self, object: &str, e: &Expr) -> Candidates<'a> {
        match e {
            Expr::Cmp { field, value, .. } => self
                .key_set(object, field, value)
                .map_or(Candidates::List(Vec::new()), Candidates::Set),
            Expr::In { field, values, .. } if values.len() == 1 => values
                .first()
                .and_then(|v| self.key_set(object, field, v))
                .map_or(Candidates::List(Vec::new()), Candidates::Set),
            Expr::In { field, values, .. } => Candidates::union(
                values
                    .iter()
                    .filter_map(|v| self.key_set(object, field, v))
                    .flatten()
                    .copied()
                    .collect(),
            ),
            Expr::And(items) => items
                .iter()
                .filter_map(|i| self.estimate(object, i).map(|n| (n, i)))
                .min_by_key(|(n, _)| *n)
                .map_or(Candidates::List(Vec::new()), |(_, i)| {
                    self.source(object, i)
                }),
            Expr::Or(items) => {
                let mut all = Vec::new();
                for i in items {
                    all.extend(self.source(object, i).iter());
                }
                Candidates::union(all)
            }
            Expr::Like { .. } => Candidates::List(Vec::new()),
        }
    }

    /// The live records of `object` by the value of an indexed `field`: one entry per value,
    /// with one record holding it (to read the value as stored) and how many hold it. Costs one
    /// step per distinct value, not per record (the control API's row counts).
    pub fn index_counts(&self, object: &str, field: &str) -> Vec<(Seq, usize)> {
        let (Some(o), Some(f)) = (index_object(object), index_field(object, field)) else {
            return Vec::new();
        };
        self.index
            .get(&(o, f))
            .map(|keys| {
                keys.values()
                    .filter_map(|seqs| Some((*seqs.first()?, seqs.len())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The records of `object` a WHERE clause can match, in creation order: from the indexes
    /// when the clause allows it, else every record of the object. A superset (deleted
    /// records included): the caller evaluates the clause. A single index entry or the object
    /// table is walked in place, so reading the first few (LIMIT) costs only those.
    pub fn candidates(&self, object: &str, filter: Option<&Expr>) -> Candidates<'_> {
        match filter.filter(|e| self.estimate(object, e).is_some()) {
            Some(e) => self.source(object, e),
            None => self
                .by_object
                .get(object)
                .map_or(Candidates::List(Vec::new()), Candidates::Set),
        }
    }
}

/// Record numbers in creation order: an index entry (or object table) as it is, or a list.
pub(crate) enum Candidates<'a> {
    Set(&'a BTreeSet<Seq>),
    List(Vec<Seq>),
}

impl Candidates<'_> {
    fn union(mut seqs: Vec<Seq>) -> Self {
        seqs.sort_unstable();
        seqs.dedup();
        Candidates::List(seqs)
    }

    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = Seq> + '_> {
        match self {
            Candidates::Set(set) => Box::new(set.iter().copied()),
            Candidates::List(list) => Box::new(list.iter().copied()),
        }
    }
}

/// The `&'static` spelling of an object name that has an index.
fn index_object(object: &str) -> Option<&'static str> {
    crate::schema::OBJECTS
        .iter()
        .find(|o| o.name == object)
        .map(|o| o.name)
}

/// The `&'static` spelling of an indexed field.
fn index_field(object: &str, field: &str) -> Option<&'static str> {
    indexed_fields(object).find(|f| *f == field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use crate::soql;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn row(seq: Seq, id: &str, case: &str, status: Option<&str>) -> Record {
        let mut fields: BTreeMap<&'static str, Value> = BTreeMap::new();
        fields.insert("Id", json!(id));
        fields.insert("Case__c", json!(case));
        fields.insert("Status__c", status.map_or(Value::Null, |s| json!(s)));
        Record {
            object: schema::object(ROW_OBJ).unwrap_or_else(|| panic!("row object")),
            fields,
            seq,
            deleted: false,
        }
    }

    fn filter(where_clause: &str) -> Expr {
        let mut q = soql::parse(&format!("SELECT Id FROM {ROW_OBJ} WHERE {where_clause}"))
            .unwrap_or_else(|e| panic!("{e}"));
        q.bind().unwrap_or_else(|e| panic!("{e}"));
        q.filter.unwrap_or_else(|| panic!("a filter"))
    }

    fn cands(s: &Store, where_clause: &str) -> Vec<Seq> {
        s.candidates(ROW_OBJ, Some(&filter(where_clause)))
            .iter()
            .collect()
    }

    fn store() -> Store {
        let mut s = Store::default();
        s.insert(row(1, "r1", "C1", Some("New")));
        s.insert(row(2, "r2", "C1", Some("Processed")));
        s.insert(row(3, "r3", "C2", Some("new")));
        s.insert(row(4, "r4", "C3", None));
        s
    }

    #[test]
    fn indexed_conditions_give_the_smallest_candidate_set() {
        let s = store();
        assert_eq!(
            cands(&s, "Status__c = 'NEW'"),
            vec![1, 3],
            "case-insensitive"
        );
        assert_eq!(cands(&s, "Status__c = null"), vec![4]);
        assert_eq!(
            cands(&s, "Status__c IN ('New', 'Processed')"),
            vec![1, 2, 3]
        );
        assert_eq!(
            cands(&s, "Case__c = 'C1' AND Status__c = 'Processed'"),
            vec![2]
        );
        assert_eq!(
            cands(&s, "Case__c = 'C2' OR Status__c = 'Processed'"),
            vec![2, 3]
        );
        assert_eq!(cands(&s, "Id IN ('r4', 'r1', 'nope')"), vec![1, 4]);
        // Not indexable: every record of the object.
        assert_eq!(cands(&s, "Status__c != 'New'"), vec![1, 2, 3, 4]);
        assert_eq!(
            cands(&s, "Case__c = 'C1' OR Attempts__c = 1"),
            vec![1, 2, 3, 4]
        );
        assert_eq!(cands(&s, "Status__c LIKE 'N%'"), vec![1, 2, 3, 4]);
        // An indexable AND member is enough.
        assert_eq!(cands(&s, "Attempts__c = 1 AND Case__c = 'C3'"), vec![4]);
    }

    #[test]
    fn writes_keep_the_indexes_and_rollback_restores_them() {
        let mut s = store();
        s.replace(row(1, "r1", "C1", Some("Processed")));
        assert_eq!(cands(&s, "Status__c = 'New'"), vec![3]);
        s.begin();
        s.replace(row(2, "r2", "C1", Some("New")));
        s.insert(row(5, "r5", "C5", Some("New")));
        let mut deleted = row(3, "r3", "C2", Some("new"));
        deleted.deleted = true;
        s.replace(deleted);
        assert_eq!(
            cands(&s, "Status__c = 'New'"),
            vec![2, 5],
            "deleted: unindexed"
        );
        assert_eq!(s.live(ROW_OBJ).count(), 4);
        s.rollback();
        assert_eq!(cands(&s, "Status__c = 'New'"), vec![3]);
        assert_eq!(cands(&s, "Case__c = 'C5'"), Vec::<Seq>::new());
        assert!(s.by_id("r5").is_none());
        assert_eq!(s.slots.len(), 4, "the inserted slot is given back");
        assert_eq!(s.all(ROW_OBJ).count(), 4);
        // Committed changes stay.
        s.begin();
        s.insert(row(5, "r5", "C5", Some("New")));
        s.commit();
        s.rollback();
        assert_eq!(cands(&s, "Case__c = 'c5'"), vec![5]);
        // Physical removal.
        s.remove(5);
        assert!(s.by_id("r5").is_none());
        assert_eq!(cands(&s, "Case__c = 'C5'"), Vec::<Seq>::new());
        assert!(
            s.index
                .values()
                .all(|keys| keys.values().all(|v| !v.is_empty()))
        );
    }
}
