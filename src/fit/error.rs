//! Errors of `fit`.

/// Errors of `fit`, each saying what to change.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
    #[error(transparent)]
    Frontend(#[from] crate::FrontendError),
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
    /// The run's [`super::Listener`] asked it to stop (nothing was written).
    #[error("interrupted: nothing was written (the last checkpoint, if any, holds the last finished epoch)")]
    Interrupted,
}

/// An error about the options or the data.
pub(crate) fn invalid(m: impl Into<String>) -> FitError {
    FitError::Invalid(m.into())
}
