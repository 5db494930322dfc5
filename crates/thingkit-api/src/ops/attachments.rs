//! Operations (to be written).

use crate::ops::Handler;
use thingkit_provision::RegistryStore;

pub(crate) fn handlers<S: RegistryStore>() -> Vec<(&'static str, Handler<S>)> {
    Vec::new()
}
