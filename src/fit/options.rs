//! Everything `fit` takes, written once: the library's options are the command line's flags
//! (`kerasc fit` flattens [`FitOptions`] into its arguments).

use std::path::PathBuf;

/// Where the training data comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataOptions {
    /// Training data: .npz with x_train/y_train (or x/y), optionally x_val/y_val; or a
    /// numeric .csv with --label-column
    #[arg(long, required_unless_present = "x")]
    pub data: Option<PathBuf>,
    /// Inputs as one .npy file (with --y, instead of --data)
    #[arg(long, requires = "y", conflicts_with = "data")]
    pub x: Option<PathBuf>,
    /// Labels as one .npy file (with --x)
    #[arg(long, requires = "x")]
    pub y: Option<PathBuf>,
    /// The label column of CSV data: its header name or 0-based index
    #[arg(long)]
    pub label_column: Option<String>,
    /// In-memory training arrays by name (`x` and `y`, or `x_train`/`y_train`, optionally
    /// `x_val`/`y_val`, as in a `.npz`) instead of files: the library's way in ([`FitOptions::with_arrays`]).
    #[arg(skip)]
    pub arrays: Option<Vec<(String, crate::npy::Array)>>,
}

/// What a run reports as it goes, to a front end that draws its own progress (the Python
/// module): after each training step and each epoch. Its answer says whether to go on: `false`
/// stops the run with [`super::FitError::Interrupted`], writing nothing.
#[derive(Debug)]
pub enum Event<'a> {
    /// Step `step` (1-based) of `steps` of epoch `epoch` (0-based) of `epochs` is done; `logs`
    /// are the epoch's running loss and metrics.
    Step { epoch: usize, epochs: usize, step: usize, steps: usize, logs: &'a [(String, f64)] },
    /// Epoch `epoch` is done after `ms` milliseconds; `logs` are its history entries.
    EpochEnd { epoch: usize, epochs: usize, steps: usize, ms: f64, logs: &'a [(String, f64)] },
}

/// A run's listener ([`Event`]); with one, `fit` draws no progress of its own.
#[derive(Clone)]
pub struct Listener(pub std::sync::Arc<dyn Fn(Event<'_>) -> bool + Send + Sync>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

/// The optimizer and its hyper-parameters; each one given overrides the file's
/// `training_config`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OptimizerFlags {
    /// Optimizer: sgd, adam, adamw, rmsprop, adagrad, nadam (default: the file's training_config)
    #[arg(long)]
    pub optimizer: Option<String>,
    /// A constant learning rate (replacing the file's, schedule included).
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// SGD's and RMSprop's momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Adam's, AdamW's and Nadam's first-moment decay.
    #[arg(long)]
    pub beta_1: Option<f32>,
    /// Adam's, AdamW's and Nadam's second-moment decay.
    #[arg(long)]
    pub beta_2: Option<f32>,
    /// The optimizer's epsilon.
    #[arg(long)]
    pub epsilon: Option<f32>,
    /// RMSprop's decay.
    #[arg(long)]
    pub rho: Option<f32>,
    /// Decoupled weight decay (AdamW's, or any optimizer's)
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip each gradient to this norm.
    #[arg(long)]
    pub clipnorm: Option<f32>,
    /// Clip each gradient element to ±this.
    #[arg(long)]
    pub clipvalue: Option<f32>,
    /// Clip all gradients together to this norm.
    #[arg(long)]
    pub global_clipnorm: Option<f32>,
}

/// Everything `fit` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct FitOptions {
    #[command(flatten)]
    pub data: DataOptions,
    /// Where to write the trained model
    #[arg(long)]
    pub output: PathBuf,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Samples per training step.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    #[command(flatten)]
    pub optimizer: OptimizerFlags,
    /// Loss (default: the file's training_config)
    #[arg(long)]
    pub loss: Option<String>,
    /// The model outputs logits
    #[arg(long)]
    pub from_logits: bool,
    /// Metrics, comma-separated: accuracy, mae, mse (default: the file's training_config)
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// Keep the data's order (default: shuffle every epoch, seeded by --seed)
    #[arg(long, conflicts_with = "shuffle")]
    pub no_shuffle: bool,
    /// Shuffle the training data every epoch (the default)
    #[arg(long)]
    pub shuffle: bool,
    /// Seeds the shuffle and the noise layers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train with dropout and noise layers off
    #[arg(long)]
    pub no_dropout: bool,
    /// Write Keras's history.history (and each step's loss) as JSON
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// 0: silent; 1: a progress bar per epoch, then the epoch's line; 2: the line alone.
    #[arg(long, default_value_t = 1)]
    pub verbose: u8,
    /// Keep these layers' weights (comma-separated layer names)
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// Freeze every layer before this one
    #[arg(long)]
    pub trainable_from: Option<String>,
    /// Hold out this last fraction of the data for validation
    #[arg(long)]
    pub validation_split: Option<f32>,
    /// Stop after PATIENCE epochs without improvement of val_loss (or loss)
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Write a checkpoint to DIR after every epoch
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Continue from the last checkpoint in --checkpoint DIR
    #[arg(long)]
    pub resume: bool,
    /// The most memory a training step's tensors may take (bytes, or with KiB/MiB/GiB/KB/MB/GB);
    /// default: what the machine (or the GPU) has
    #[arg(long, value_parser = crate::runtime::memory::parse_bytes)]
    pub memory_limit: Option<usize>,
    /// Print where the training steps spent their time: the most expensive op kinds and nodes
    #[arg(long)]
    pub profile: bool,
    /// Write a self-contained HTML page of the run: loss and metric curves per epoch and per
    /// step, the learning rate, each epoch's time and the step's time by op kind
    #[arg(long, value_name = "R.html")]
    pub report: Option<PathBuf>,
    /// Test hook: abort the process before this (0-based, counted over the run) step.
    #[arg(long, hide = true)]
    pub abort_after_steps: Option<usize>,
    /// Run each step (forward and backward pass, and the optimizer's update) on this GPU;
    /// `None`: the CPU.
    #[arg(skip)]
    pub cuda: Option<crate::runtime::cuda::CudaOptions>,
    /// On the CPU: the thread pool of the logical CPU device that trains; `None`: the global one.
    #[arg(skip)]
    pub pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    /// The device's name in the report (`None`: /GPU:K of `cuda`, else /CPU:0).
    #[arg(skip)]
    pub device: Option<crate::Device>,
    /// Two or more: train data-parallel (MirroredStrategy) across these devices, the first
    /// being the one `cuda` and `pool` describe.
    #[arg(skip)]
    pub replicas: Vec<crate::LogicalDevice>,
    /// Multi-worker training (`--strategy multi-worker`): this process's place among the
    /// workers, whose replicas split every global batch; rank 0 alone writes files.
    #[arg(skip)]
    pub worker: Option<crate::cluster::Worker>,
    /// Model parallelism: the step's layers placed on several CPU devices.
    #[arg(skip)]
    pub placement: Option<crate::runtime::training::StepPlacement>,
    /// Told of every step and epoch, and asked whether to go on; `None`: progress on stderr as
    /// `verbose` says.
    #[arg(skip)]
    pub listener: Option<Listener>,
}

/// A count that must be at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl FitOptions {
    /// Options from command-line flags (without the program name), as `kerasc fit` takes them.
    pub fn from_flags<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(
        flags: I,
    ) -> Result<FitOptions, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            options: FitOptions,
        }
        let args = std::iter::once(std::ffi::OsString::from("fit")).chain(flags.into_iter().map(Into::into));
        <Flags as clap::Parser>::try_parse_from(args).map(|f| f.options)
    }

    /// Options from command-line flags as [`FitOptions::from_flags`] takes them, the training data
    /// being `arrays` in memory ([`DataOptions::arrays`]) rather than files the flags name.
    pub fn with_arrays<I: IntoIterator<Item = S>, S: Into<std::ffi::OsString> + Clone>(
        flags: I,
        arrays: Vec<(String, crate::npy::Array)>,
    ) -> Result<FitOptions, clap::Error> {
        // The flags are parsed with a stand-in for the data file they cannot name.
        let stand_in = ["--data", "<arrays>"].map(std::ffi::OsString::from);
        let mut o = Self::from_flags(stand_in.into_iter().chain(flags.into_iter().map(Into::into)))?;
        o.data = DataOptions { arrays: Some(arrays), ..DataOptions::default() };
        Ok(o)
    }

    /// Whether the training data is shuffled every epoch.
    pub fn shuffles(&self) -> bool {
        !self.no_shuffle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_the_options_and_the_rest_keep_their_defaults() {
        let o = FitOptions::from_flags([
            "--data",
            "d.npz",
            "--output",
            "o.h5",
            "--learning-rate",
            "0.5",
            "--no-shuffle",
            "--metrics",
            "accuracy,mae",
        ])
        .unwrap();
        assert_eq!(o.data.data, Some(PathBuf::from("d.npz")));
        assert_eq!((o.optimizer.learning_rate, o.optimizer.optimizer.as_deref()), (Some(0.5), None));
        assert_eq!(o.metrics, Some(vec!["accuracy".to_string(), "mae".to_string()]));
        assert!(!o.shuffles());
        assert_eq!((o.epochs, o.batch_size, o.verbose, o.seed), (1, 32, 1, 0));
        assert!(o.cuda.is_none());
        // No data; data and --x together; --x without --y.
        assert!(FitOptions::from_flags(["--output", "o.h5"]).is_err());
        assert!(FitOptions::from_flags(["--data", "d", "--x", "x.npy", "--y", "y.npy", "--output", "o"]).is_err());
        assert!(FitOptions::from_flags(["--x", "x.npy", "--output", "o"]).is_err());
    }
}
