//! ONNX Runtime: loading the shared library once, creating sessions on a device, and
//! running one padded micro-batch.
//!
//! Why a separate module: everything `ort`-specific lives here, so the batcher and the
//! UDF deal in token ids and f32 vectors only.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use super::config::Device;
use super::error::EmbedError;
use super::tokenize::TokenizedText;

/// The process-wide ONNX Runtime environment: the library can be loaded only once.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The ONNX Runtime environment, loading `library` on first use.
pub fn environment(library: &Path) -> Result<&'static Environment, EmbedError> {
    if ENVIRONMENT.get().is_none() && !library.exists() {
        return Err(EmbedError::RuntimeMissing(library.to_path_buf()));
    }
    ENVIRONMENT
        .get_or_init(|| {
            preload_cuda_libraries(library);
            let builder = ort::init_from(library).map_err(|e| e.to_string())?;
            builder
                .with_name("rankql")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EmbedError::Runtime(format!("loading {}: {e}", library.display())))
}

/// CUDA and cuDNN libraries opened for the whole process, so that they stay loaded.
static CUDA_LIBRARIES: OnceLock<Vec<libloading::os::unix::Library>> = OnceLock::new();

/// Opens the CUDA and cuDNN libraries that `models/fetch.py --cuda` put in a `cuda/`
/// folder beside ONNX Runtime's GPU build, each with `RTLD_GLOBAL`. ONNX Runtime's CUDA
/// provider then finds them by name as already loaded, so `--device cuda` works without
/// `LD_LIBRARY_PATH` (which the loader reads only when a process starts). The libraries
/// depend on one another: those whose dependencies are not loaded yet are retried until
/// a round loads nothing more.
fn preload_cuda_libraries(library: &Path) {
    let Some(dir) = library.parent().map(|parent| parent.join("cuda")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut pending: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().contains(".so"))
        .collect();
    pending.sort();
    let mut loaded = Vec::new();
    loop {
        let before = pending.len();
        pending.retain(|path| {
            // SAFETY: these are NVIDIA's libraries, installed by fetch.py from pinned wheels;
            // their initialisers only register with the CUDA driver.
            let opened = unsafe {
                libloading::os::unix::Library::open(
                    Some(path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            };
            match opened {
                Ok(handle) => {
                    loaded.push(handle);
                    false
                }
                Err(_) => true,
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    let failed: Vec<String> = pending
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().to_string())
        .collect();
    tracing::info!(
        "loaded {} CUDA libraries from {}{}",
        loaded.len(),
        dir.display(),
        match failed.is_empty() {
            true => String::new(),
            false => format!(
                "; not loaded (a missing GPU driver, libcuda.so.1, is the usual cause): {}",
                failed.join(", ")
            ),
        }
    );
    let _ = CUDA_LIBRARIES.set(loaded);
}

/// A session plus what its graph expects, read once at load.
pub struct ModelSession {
    session: Session,
    input_names: Vec<String>,
}

impl ModelSession {
    /// Creates a session for `model_path` on `device` (CUDA falls back to the CPU with a
    /// warning); returns it with the device it really runs on.
    pub fn create(
        environment: &Environment,
        model_path: &Path,
        device: Device,
        intra_threads: usize,
    ) -> Result<(Self, Device), EmbedError> {
        let (session, used) = match device {
            Device::Cpu => (
                cpu_session(environment, model_path, intra_threads)?,
                Device::Cpu,
            ),
            Device::Cuda | Device::Auto => match cuda_session(environment, model_path) {
                Ok(session) => (session, Device::Cuda),
                Err(reason) => {
                    tracing::warn!(
                        "CUDA could not start ({reason}); embed() falls back to the CPU"
                    );
                    (
                        cpu_session(environment, model_path, intra_threads)?,
                        Device::Cpu,
                    )
                }
            },
        };
        let input_names = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        Ok((
            Self {
                session,
                input_names,
            },
            used,
        ))
    }

    /// Runs a micro-batch padded to `seq` tokens; returns the flat `[batch, seq', dim]`
    /// output with its `seq'` (1 when the model pools itself) and `dim`.
    pub fn run(
        &mut self,
        batch: &[&TokenizedText],
        seq: usize,
    ) -> Result<(Vec<f32>, usize, usize), EmbedError> {
        let rows = batch.len();
        let mut ids = vec![0i64; rows * seq];
        let mut mask = vec![0i64; rows * seq];
        for (row, text) in batch.iter().enumerate() {
            let kept = text.len().min(seq);
            ids[row * seq..row * seq + kept].copy_from_slice(&text.ids[..kept]);
            mask[row * seq..row * seq + kept].fill(1);
        }
        let shape = [rows, seq];
        let mut inputs: Vec<(String, SessionInputValue)> = Vec::with_capacity(3);
        for name in &self.input_names {
            let values = match name.as_str() {
                "input_ids" => ids.clone(),
                "attention_mask" => mask.clone(),
                "token_type_ids" => vec![0i64; rows * seq],
                other => {
                    return Err(EmbedError::Runtime(format!(
                    "model input '{other}' is not one of input_ids, attention_mask, token_type_ids"
                )))
                }
            };
            inputs.push((name.clone(), Tensor::from_array((shape, values))?.into()));
        }
        let outputs = self.session.run(inputs)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>()?;
        let (seq_out, dim) = match **out_shape {
            [b, s, d] if b as usize == rows => (s as usize, d as usize),
            [b, d] if b as usize == rows => (1, d as usize),
            _ => {
                return Err(EmbedError::Runtime(format!(
                    "unexpected output shape {out_shape:?} for a batch of {rows}"
                )))
            }
        };
        Ok((data.to_vec(), seq_out, dim))
    }
}

/// A CPU session. Memory patterns are off: they are planned per input shape and kept,
/// and every micro-batch has its own (texts × longest text) shape, so with them on the
/// memory of a long `embed` job grows with the number of shapes it has seen.
fn cpu_session(
    environment: &Environment,
    model_path: &Path,
    intra_threads: usize,
) -> Result<Session, EmbedError> {
    Ok(Session::builder(environment)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_memory_pattern(false)?
        .with_intra_threads(intra_threads.max(1))?
        .commit_from_file(model_path)?)
}

#[cfg(feature = "cuda")]
fn cuda_session(environment: &Environment, model_path: &Path) -> Result<Session, String> {
    use ort::ep::ExecutionProvider;
    let mut builder = Session::builder(environment).map_err(|e| e.to_string())?;
    ort::ep::CUDA::default()
        .register(&mut builder)
        .map_err(|e| e.to_string())?;
    builder
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| e.to_string())?
        .commit_from_file(model_path)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_session(_environment: &Environment, _model_path: &Path) -> Result<Session, String> {
    Err("this build has no CUDA support; rebuild with `cargo build --features cuda`".into())
}
