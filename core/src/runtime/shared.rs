//! ONNX Runtime sessions shared by every cascade of the process that loads the same file with
//! the same options, as `gvaclassify`'s `model-instance-id` shares them: eight streams of one
//! bundle hold its weights once. A shared session runs one frame at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use super::session::{Model, OnnxError, SessionOptions, Tensor};

/// What makes two loads the same: the file (as it is now on disk) and the threads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    file: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    threads: usize,
}

/// The sessions loaded, while some cascade holds them.
static SESSIONS: LazyLock<Mutex<HashMap<Key, Weak<Mutex<Model>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A model, loaded for one cascade or shared with others.
pub struct SharedModel {
    model: Arc<Mutex<Model>>,
    path: PathBuf,
    input: String,
    /// The input's shape as the model declares it (-1 where symbolic), when it does.
    declared_input: Option<Vec<i64>>,
    outputs: Vec<String>,
}

impl SharedModel {
    /// Loads `path`; with `options.shared`, reuses the session another cascade of the process
    /// loaded from the same file with the same threads.
    pub fn load(path: &Path, options: SessionOptions) -> Result<SharedModel, OnnxError> {
        let key = options
            .shared
            .then(|| {
                let meta = std::fs::metadata(path).ok()?;
                Some(Key {
                    file: path.canonicalize().ok()?,
                    len: meta.len(),
                    modified: meta.modified().ok(),
                    threads: options.threads,
                })
            })
            .flatten();
        let model = match key {
            Some(key) => {
                let mut sessions = lock(&SESSIONS);
                sessions.retain(|_, weak| weak.strong_count() > 0);
                match sessions.get(&key).and_then(Weak::upgrade) {
                    Some(model) => model,
                    None => {
                        let model = Arc::new(Mutex::new(Model::load(path, options)?));
                        sessions.insert(key, Arc::downgrade(&model));
                        model
                    }
                }
            }
            None => Arc::new(Mutex::new(Model::load(path, options)?)),
        };
        let (input, declared_input, outputs) = {
            let m = lock(&model);
            (
                m.input_name().to_owned(),
                m.declared_input_shape().map(<[i64]>::to_vec),
                m.output_names().into_iter().map(str::to_owned).collect(),
            )
        };
        Ok(SharedModel {
            model,
            path: path.to_path_buf(),
            input,
            declared_input,
            outputs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn input_name(&self) -> &str {
        &self.input
    }

    pub fn declared_input_shape(&self) -> Option<&[i64]> {
        self.declared_input.as_deref()
    }

    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// [`Model::run_into`], waiting for any other cascade's run of the same session.
    pub fn run_into(&self, shape: &[i64], data: &[f32], out: &mut Tensor) -> Result<(), OnnxError> {
        lock(&self.model).run_into(shape, data, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_with_the_same_threads_is_one_session_while_held() {
        let path = earlyexit_testkit::model("fmnist_resnet20w32.onnx");
        let shared = |threads| SessionOptions {
            threads,
            shared: true,
        };
        let a = SharedModel::load(&path, shared(1)).unwrap();
        let b = SharedModel::load(&path, shared(1)).unwrap();
        assert!(Arc::ptr_eq(&a.model, &b.model));
        assert_eq!(Arc::strong_count(&a.model), 2);
        let other_threads = SharedModel::load(&path, shared(2)).unwrap();
        assert!(!Arc::ptr_eq(&a.model, &other_threads.model));
        let own = SharedModel::load(
            &path,
            SessionOptions {
                threads: 1,
                shared: false,
            },
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&a.model, &own.model));
        // Both run, one after the other.
        let (mut x, mut y) = (Tensor::default(), Tensor::default());
        let input = vec![0.5f32; 28 * 28];
        a.run_into(&[1, 1, 28, 28], &input, &mut x).unwrap();
        b.run_into(&[1, 1, 28, 28], &input, &mut y).unwrap();
        assert_eq!(x, y);
        // Once no cascade holds it, the session goes.
        let weak = Arc::downgrade(&a.model);
        drop((a, b));
        assert!(weak.upgrade().is_none());
    }
}
