//! The device update state machine; documented on [`UpdateMachine`].

use std::io::Read;

use crate::envelope::{ImageRequirement, Verified};
use crate::error::{Error, Result};
use crate::image::{ImageCheckpoint, ImageVerifier, VerifiedImage};
use crate::manifest::{Manifest, Uuid};

/// One of the two image slots (A/B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// Where the update currently is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// No update in progress.
    Idle,
    /// Image bytes are being received into the inactive slot.
    Downloading {
        /// Progress, enough to resume without downloading again.
        checkpoint: ImageCheckpoint,
    },
    /// The whole image matched the manifest; not yet written as bootable.
    Verified {
        /// The image's requirement.
        target: ImageRequirement,
    },
    /// Installed in the inactive slot and marked for a trial boot; not yet confirmed.
    Installed {
        /// The image's requirement.
        target: ImageRequirement,
        /// Trial boots so far.
        boot_attempts: u32,
    },
    /// The last update was confirmed healthy.
    Committed {
        /// Its sequence number.
        sequence_number: u64,
    },
    /// The last update failed its trial and the previous slot is active again.
    RolledBack {
        /// The sequence number that was refused.
        sequence_number: u64,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Downloading { .. } => "downloading",
            Phase::Verified { .. } => "verified",
            Phase::Installed { .. } => "installed",
            Phase::Committed { .. } => "committed",
            Phase::RolledBack { .. } => "rolled-back",
        }
    }

    fn is_at_rest(&self) -> bool {
        matches!(
            self,
            Phase::Idle | Phase::Committed { .. } | Phase::RolledBack { .. }
        )
    }
}

/// The persisted state of the update machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdateState {
    /// The current phase.
    pub phase: Phase,
    /// The slot that boots normally (holds the committed image).
    pub active_slot: Slot,
    /// Sequence number of the committed image: offered manifests must be strictly greater.
    pub min_sequence: u64,
    /// Trial boots allowed before an unconfirmed image is rolled back. Default 1.
    pub max_boot_attempts: u32,
}

impl UpdateState {
    /// A fresh state: idle, slot A active, floor `min_sequence`.
    pub fn new(min_sequence: u64) -> UpdateState {
        UpdateState {
            phase: Phase::Idle,
            active_slot: Slot::A,
            min_sequence,
            max_boot_attempts: 1,
        }
    }
}

/// The device identity an update must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetDevice {
    /// Vendor identifier.
    pub vendor_id: Uuid,
    /// Class identifier.
    pub class_id: Uuid,
    /// Largest image the inactive slot can hold.
    pub max_image_size: u64,
}

/// What the bootloader should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDecision {
    /// Boot this slot normally.
    Boot(Slot),
    /// Boot this slot on trial; the image must call [`UpdateMachine::confirm`].
    Trial(Slot),
}

/// The sans-IO update state machine.
///
/// The device's update state machine (sans-IO, RFC 9019 section 3): idle → downloading →
/// verified → installed (pending) → committed, with rollback to the previous slot when the new
/// image does not confirm its health.
///
/// The machine performs no I/O. The caller persists [`UpdateState`] (a small serde struct) after
/// every transition, writes image bytes to the inactive slot, and boots the slot the machine
/// names. The stored minimum sequence number rises **only** on [`UpdateMachine::confirm`], so an
/// image that never proves healthy never raises the anti-rollback floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMachine {
    state: UpdateState,
    identity: TargetDevice,
}

impl UpdateMachine {
    /// A machine over a persisted (or fresh) state.
    pub fn new(state: UpdateState, identity: TargetDevice) -> UpdateMachine {
        UpdateMachine { state, identity }
    }

    /// The state to persist.
    pub fn state(&self) -> &UpdateState {
        &self.state
    }

    fn invalid(&self, event: &'static str) -> Error {
        Error::InvalidTransition {
            event,
            state: self.state.phase.name(),
        }
    }

    /// Starts an update from a verified manifest: checks sequence (against the committed floor),
    /// vendor, class and size, and returns the verifier to feed the image into. The image goes
    /// to the inactive slot.
    pub fn begin(&mut self, manifest: &Verified<Manifest>) -> Result<ImageVerifier> {
        if !self.state.phase.is_at_rest() {
            return Err(self.invalid("begin"));
        }
        manifest.check_sequence(self.state.min_sequence)?;
        manifest.check_identity(&self.identity.vendor_id, &self.identity.class_id)?;
        let req = manifest.image_requirement(self.identity.max_image_size)?;
        let v = ImageVerifier::new(req);
        self.state.phase = Phase::Downloading {
            checkpoint: v.checkpoint(),
        };
        Ok(v)
    }

    /// [`UpdateMachine::begin`] at time `now` (unix seconds, from the caller): also refuses a
    /// manifest that has expired since it was verified ([`Error::Expired`]), e.g. one held back
    /// by an attacker between verification and installation.
    pub fn begin_at(&mut self, manifest: &Verified<Manifest>, now: u64) -> Result<ImageVerifier> {
        manifest.check_expiry(now)?;
        self.begin(manifest)
    }

    /// Records download progress (persist the state afterwards).
    pub fn progress(&mut self, verifier: &ImageVerifier) -> Result<()> {
        match &self.state.phase {
            Phase::Downloading { checkpoint }
                if checkpoint.requirement == *verifier.requirement() =>
            {
                self.state.phase = Phase::Downloading {
                    checkpoint: verifier.checkpoint(),
                };
                Ok(())
            }
            _ => Err(self.invalid("progress")),
        }
    }

    /// After a restart during download: rebuilds the verifier from the stored prefix of the
    /// inactive slot (no re-download).
    pub fn resume(&self, stored_prefix: impl Read) -> Result<ImageVerifier> {
        match &self.state.phase {
            Phase::Downloading { checkpoint } => ImageVerifier::resume(checkpoint, stored_prefix),
            _ => Err(self.invalid("resume")),
        }
    }

    /// The whole image verified: downloading → verified.
    pub fn downloaded(&mut self, image: &VerifiedImage) -> Result<()> {
        match &self.state.phase {
            Phase::Downloading { checkpoint }
                if checkpoint.requirement.digest == image.digest
                    && checkpoint.requirement.size == image.size =>
            {
                self.state.phase = Phase::Verified {
                    target: checkpoint.requirement.clone(),
                };
                Ok(())
            }
            _ => Err(self.invalid("downloaded")),
        }
    }

    /// The image is written and marked for a trial boot: verified → installed (pending).
    /// Returns the slot it is in.
    pub fn installed(&mut self) -> Result<Slot> {
        match &self.state.phase {
            Phase::Verified { target } => {
                self.state.phase = Phase::Installed {
                    target: target.clone(),
                    boot_attempts: 0,
                };
                Ok(self.state.active_slot.other())
            }
            _ => Err(self.invalid("installed")),
        }
    }

    /// Called by the bootloader at every boot. A pending image boots on trial until it has used
    /// `max_boot_attempts`; after that it is rolled back and the previous slot boots.
    pub fn boot(&mut self) -> BootDecision {
        if let Phase::Installed {
            target,
            boot_attempts,
        } = &self.state.phase
        {
            if *boot_attempts < self.state.max_boot_attempts {
                self.state.phase = Phase::Installed {
                    target: target.clone(),
                    boot_attempts: boot_attempts + 1,
                };
                return BootDecision::Trial(self.state.active_slot.other());
            }
            self.state.phase = Phase::RolledBack {
                sequence_number: target.sequence_number,
            };
        }
        BootDecision::Boot(self.state.active_slot)
    }

    /// The new image reports healthy: installed → committed. The new slot becomes active and the
    /// minimum sequence number rises to the new image's.
    pub fn confirm(&mut self) -> Result<()> {
        match &self.state.phase {
            Phase::Installed { target, .. } => {
                let seq = target.sequence_number;
                self.state.active_slot = self.state.active_slot.other();
                self.state.min_sequence = seq;
                self.state.phase = Phase::Committed {
                    sequence_number: seq,
                };
                Ok(())
            }
            _ => Err(self.invalid("confirm")),
        }
    }

    /// The new image reports unhealthy: roll back to the previous slot. Returns the slot to boot.
    pub fn health_failed(&mut self) -> Result<Slot> {
        match &self.state.phase {
            Phase::Installed { target, .. } => {
                self.state.phase = Phase::RolledBack {
                    sequence_number: target.sequence_number,
                };
                Ok(self.state.active_slot)
            }
            _ => Err(self.invalid("health_failed")),
        }
    }

    /// Abandons a download or a verified-but-not-installed image.
    pub fn abort(&mut self) -> Result<()> {
        match &self.state.phase {
            Phase::Downloading { .. } | Phase::Verified { .. } => {
                self.state.phase = Phase::Idle;
                Ok(())
            }
            _ => Err(self.invalid("abort")),
        }
    }
}
