//! The contract every sink keeps (after DataFusion's `DataSink::write_all` and vector's
//! healthcheck): built from its config, checked before a long run, then given every table of
//! a run once; it commits all of them or none before it returns.

use arrow::array::RecordBatch;

use crate::model::StarSchema;
use crate::table::{LOAD_ERRORS, STAGING_EVENTS, STAGING_SONGS, TableDef};

/// Everything one run loads.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    pub staging_events: &'a RecordBatch,
    pub staging_songs: &'a RecordBatch,
    pub star: &'a StarSchema,
    /// The run's rejects, as the `load_errors` table.
    pub load_errors: &'a RecordBatch,
}

impl Load<'_> {
    /// Every table with its definition, in the order a run reports them.
    pub fn tables(&self) -> [(&'static TableDef, &RecordBatch); 8] {
        let [fact, users, songs, artists, time] = self.star.tables();
        [
            (&STAGING_EVENTS, self.staging_events),
            (&STAGING_SONGS, self.staging_songs),
            fact,
            users,
            songs,
            artists,
            time,
            (&LOAD_ERRORS, self.load_errors),
        ]
    }
}

/// A place the tables go.
pub trait Sink {
    /// The sink's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short description for messages, with no secrets in it.
    fn describe(&self) -> String;

    /// Checks that the sink can be reached and written before the input is read.
    fn check(&mut self) -> Result<(), Self::Error>;

    /// Replaces the sink's tables with `load`'s, all or nothing.
    fn load(&mut self, load: &Load<'_>) -> Result<(), Self::Error>;
}
