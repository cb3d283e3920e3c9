//! Everything a pipeline author needs: `use weir_engine::prelude::*;`.

pub use crate::api::window::WindowCollector;
pub use crate::api::{ConnectedKeyedStreams, ConnectedStreams, KeyedStream, Pipeline, SinkStep, Stream};
pub use crate::api::{
    Evictor, GlobalWindows, Session, SlidingEventTime, SlidingProcessingTime, Stamped, TimeWindow, Trigger,
    TriggerContext, TriggerResult, TumblingEventTime, TumblingProcessingTime, WindowAssigner, WindowTime, Windowed,
    WindowedStream,
};
pub use crate::api::{
    Groups, IntervalJoin, IntervalJoined, Pairs, WindowJoin, WindowJoinKeys, WindowJoinWhere, WindowedJoin,
};
pub use crate::checkpoint::{
    CheckpointConfig, CheckpointStats, LocalDirStorage, OnCancel, RestoreMode, Savepoint, SavepointRestore,
};
pub use crate::config::restart::RestartStrategy;
pub use crate::data::{Data, Key, Record, Timestamp, MAX_WATERMARK, MIN_WATERMARK};
pub use crate::error::{Error, ErrorKind, Reason, Result};
pub use crate::functions::operator_state::{ListDistribution, OperatorListDescriptor, OperatorListState};
pub use crate::functions::{AsyncFunction, FlatMapFunction, FunctionStateContext, MapFunction, RuntimeContext};
pub use crate::keyed::{
    KeyedContext, ListState, ListStateDescriptor, MapState, MapStateDescriptor, SortKey, SortedMapState,
    SortedMapStateDescriptor, StateCodec, StateDeclaration, StateDescriptor, TimeDomain, Timer, Ttl, ValueState,
    ValueStateDescriptor,
};
pub use crate::message::CheckpointId;
pub use crate::operator::async_io::options::{AsyncOptions, ResultOrder, RetryStrategy};
pub use crate::operator::broadcast::{
    BroadcastContext, BroadcastProcess, BroadcastState, BroadcastStateDescriptor, KeyedBroadcastProcess,
};
pub use crate::operator::join::interval::IntervalJoinContext;
pub use crate::operator::keyed_process::{KeyedCoProcess, KeyedProcess};
pub use crate::operator::rolling::AggregateFunction;
pub use crate::runtime::{JobHandle, JobReport, OperatorReport};
pub use crate::side_output::{BadRecordPolicy, DeadLetter, OutputTag};
pub use crate::sink::{CollectSink, DiscardSink, Sink, SinkContext, SinkWriter};
pub use crate::sink::{FileSink, Idempotent, IdempotentSink};
pub use crate::source::{
    AssignedSplit, FileLinesSource, GeneratorSource, ReadStatus, Source, SourceReader, SplitId, SplitPosition,
    SubtaskInfo, VecSource,
};
pub use crate::state::{MemoryBackend, MemtableAtBarrier, RocksDbBackend, StateBackend};
pub use crate::time::WatermarkStrategy;
pub use crate::window::evictor::{count_evictor, time_evictor, EvictorContext};
/// The built-in triggers: `triggers::count(n)`, `triggers::purging(t)`,
/// `triggers::continuous_event_time(d)`, ...
pub use crate::window::triggers;
