//! The rollout pacing and timers over many jobs and executions (to be written).
