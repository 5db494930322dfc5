//! Rollout, abort, timeout and retry arithmetic (to be written).
