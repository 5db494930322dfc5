//! The pre-provisioning hook; documented on [`PreProvisioningHook`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};

/// What the hook is asked about (the fields of the AWS hook input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRequest {
    /// The claim certificate the device connected with.
    pub claim_certificate_id: String,
    /// The certificate being provisioned.
    pub certificate_id: String,
    /// The template name.
    pub template_name: String,
    /// The parameters the device sent.
    pub parameters: BTreeMap<String, String>,
}

/// The hook's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookResponse {
    /// `allowProvisioning`: false denies the request.
    pub allow_provisioning: bool,
    /// `parameterOverrides`: values that replace (or add to) the device's parameters.
    pub parameter_overrides: BTreeMap<String, String>,
}

impl HookResponse {
    /// Allow, without overrides.
    pub fn allow() -> Self {
        HookResponse {
            allow_provisioning: true,
            parameter_overrides: BTreeMap::new(),
        }
    }

    /// Deny.
    pub fn deny() -> Self {
        HookResponse::default()
    }
}

/// A pre-provisioning hook. Implemented for closures `Fn(&HookRequest) -> HookResponse`.
///
/// The pre-provisioning hook: operator code that allows or denies a RegisterThing request and may
/// override its parameters (the AWS "pre-provisioning hook" Lambda, as a Rust trait).
///
/// # Timeout without an async runtime
///
/// The crate is sans-IO and needs no runtime, so the timeout is enforced with a thread: the hook
/// runs on a freshly spawned thread and the caller waits on a channel with
/// [`std::sync::mpsc::Receiver::recv_timeout`] for at most [`HookConfig::timeout`] (default 5 s).
/// If the hook does not answer in time, panics, or the thread cannot be spawned, the request is
/// **denied** (fail closed). A hook that overruns keeps running on its own thread until it
/// returns; its late answer is discarded. Hooks should therefore be bounded themselves (e.g. use
/// timeouts on their own network calls).
pub trait PreProvisioningHook: Send + Sync + 'static {
    /// Decides on one request.
    fn check(&self, request: &HookRequest) -> HookResponse;
}

impl<F> PreProvisioningHook for F
where
    F: Fn(&HookRequest) -> HookResponse + Send + Sync + 'static,
{
    fn check(&self, request: &HookRequest) -> HookResponse {
        self(request)
    }
}

/// Hook settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookConfig {
    /// How long to wait for the hook before denying. Default 5 seconds (as AWS).
    pub timeout: Duration,
}

impl HookConfig {
    /// This value with [`timeout`](Self::timeout) replaced.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            timeout: Duration::from_secs(5),
        }
    }
}

/// Runs `hook` on its own thread and waits at most `config.timeout`. Every failure (timeout,
/// panic, spawn failure, `allow_provisioning: false`) is an [`Error::HookRefused`].
pub fn run_hook(
    hook: &Arc<dyn PreProvisioningHook>,
    request: HookRequest,
    config: &HookConfig,
) -> Result<HookResponse> {
    let (tx, rx) = mpsc::sync_channel(1);
    let hook = Arc::clone(hook);
    std::thread::Builder::new()
        .name("thingkit-provisioning-hook".into())
        .spawn(move || {
            let answer = hook.check(&request);
            // The receiver may have given up (timeout): the late answer is dropped.
            let _ = tx.send(answer);
        })
        .map_err(|e| Error::HookRefused(format!("could not start the hook: {e}")))?;
    match rx.recv_timeout(config.timeout) {
        Ok(answer) if answer.allow_provisioning => Ok(answer),
        Ok(_) => Err(Error::HookRefused("the hook denied provisioning".into())),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::HookRefused(format!(
            "the hook did not answer within {} ms",
            config.timeout.as_millis()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Error::HookRefused("the hook failed (panicked)".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> HookRequest {
        HookRequest {
            claim_certificate_id: "c".into(),
            certificate_id: "d".into(),
            template_name: "t".into(),
            parameters: BTreeMap::new(),
        }
    }

    #[test]
    fn a_slow_hook_fails_closed() {
        let hook: Arc<dyn PreProvisioningHook> = Arc::new(|_: &HookRequest| {
            std::thread::sleep(Duration::from_millis(500));
            HookResponse::allow()
        });
        let config = HookConfig {
            timeout: Duration::from_millis(20),
        };
        let e = run_hook(&hook, request(), &config).expect_err("timeout denies");
        assert!(e.to_string().contains("did not answer"), "{e}");
    }

    #[test]
    fn a_panicking_hook_fails_closed() {
        let hook: Arc<dyn PreProvisioningHook> =
            Arc::new(|_: &HookRequest| -> HookResponse { panic!("operator bug") });
        let e = run_hook(&hook, request(), &HookConfig::default()).expect_err("panic denies");
        assert!(e.to_string().contains("panicked"), "{e}");
    }

    #[test]
    fn a_denying_hook_denies_and_an_allowing_hook_allows() {
        let deny: Arc<dyn PreProvisioningHook> = Arc::new(|_: &HookRequest| HookResponse::deny());
        assert!(run_hook(&deny, request(), &HookConfig::default()).is_err());
        let allow: Arc<dyn PreProvisioningHook> = Arc::new(|_: &HookRequest| HookResponse::allow());
        assert!(run_hook(&allow, request(), &HookConfig::default()).is_ok());
    }
}
