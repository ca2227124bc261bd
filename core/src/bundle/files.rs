//! The files a bundle is made of, opened with care: only regular files, only inside the
//! bundle's folder, and no larger than a cap. A bundle from elsewhere must not hang a pipeline
//! (a FIFO), exhaust its memory (`/dev/zero`), or read what lies outside it
//! (`../../etc/passwd`).

use std::fs::Metadata;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::error::BundleError;

/// The largest `exits.yaml` read: a bundle with gates on a hundred exits takes a few kB.
pub const MAX_EXITS_BYTES: u64 = 1 << 20;

/// The largest labels file read: a million class names of 16 bytes.
pub const MAX_LABELS_BYTES: u64 = 16 << 20;

/// The deepest `[` and `{` nesting `exits.yaml` may have. The format nests three deep; a YAML
/// parser takes time that grows much faster than the depth, so depth is checked first.
pub const MAX_NESTING: usize = 32;

fn error(file: &Path, key: &str, message: String) -> BundleError {
    BundleError {
        file: file.to_path_buf(),
        key: key.into(),
        message,
    }
}

/// What a path that is not a regular file is, in words.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_dir() => "a directory",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_char_device() => "a character device",
        _ if t.is_block_device() => "a block device",
        _ if t.is_socket() => "a socket",
        _ => "not a regular file",
    }
}

/// The size of `path`, a regular file (after symbolic links), or an error for `key` that says
/// what it is instead.
pub fn regular(path: &Path, key: &str) -> Result<u64, BundleError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => format!("cannot read: {e}"),
        };
        error(path, key, message)
    })?;
    if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(error(
            path,
            key,
            format!("is {}, not a regular file", kind_of(&meta)),
        ))
    }
}

/// The text of `path`, a regular file of at most `cap` bytes.
pub fn read_text(path: &Path, key: &str, cap: u64) -> Result<String, BundleError> {
    let size = regular(path, key)?;
    let too_large = |size: u64| {
        error(
            path,
            key,
            format!("is {size} bytes; more than the {cap} a bundle's file may have"),
        )
    };
    if size > cap {
        return Err(too_large(size));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_string(&mut text))
        .map_err(|e| error(path, key, format!("cannot read: {e}")))?;
    // The file grew since its size was read.
    if text.len() as u64 > cap {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// `relative`, a path that `file` (the bundle's `exits.yaml`) names for `key`, against the
/// bundle's folder: refused unless it stays inside that folder.
pub fn inside(file: &Path, relative: &str, key: &str) -> Result<PathBuf, BundleError> {
    if !stays_inside(relative) {
        return Err(error(
            file,
            key,
            format!(
                "'{relative}' leaves the bundle's folder; a bundle names its files by paths inside it (no '..', not absolute)"
            ),
        ));
    }
    Ok(file.parent().unwrap_or(Path::new(".")).join(relative))
}

/// Whether `relative` names a path inside a folder: not empty, not absolute, no `..`.
pub fn stays_inside(relative: &str) -> bool {
    !relative.is_empty()
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Refuses YAML whose `[` and `{` nest deeper than [`MAX_NESTING`], before it is parsed.
/// Quoted text and comments are skipped; the count is a bound, so a stray bracket in a plain
/// word only counts towards it.
pub fn check_nesting(file: &Path, text: &str) -> Result<(), BundleError> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote = None;
    let mut comment = false;
    let mut previous = '\n';
    for c in text.chars() {
        match (quote, c) {
            _ if comment => comment = c != '\n',
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    if deepest > MAX_NESTING {
        return Err(error(
            file,
            "(document)",
            format!("nested {deepest} levels deep; a bundle needs at most {MAX_NESTING}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = regular(dir.path(), "model").unwrap_err();
        assert!(e.message.contains("a directory"), "{e}");
        let e = regular(Path::new("/dev/zero"), "labels").unwrap_err();
        assert!(e.message.contains("a character device"), "{e}");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = read_text(&fifo, "model", 10).unwrap_err();
        assert!(e.message.contains("a FIFO"), "{e}");
        let e = regular(&dir.path().join("none"), "model").unwrap_err();
        assert_eq!(e.message, "no such file");
    }

    #[test]
    fn files_past_the_cap_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels.txt");
        std::fs::write(&file, "a\nb\n").unwrap();
        assert_eq!(read_text(&file, "labels", 4).unwrap(), "a\nb\n");
        let e = read_text(&file, "labels", 3).unwrap_err();
        assert!(e.message.contains("is 4 bytes; more than the 3"), "{e}");
    }

    #[test]
    fn paths_stay_inside_the_bundle() {
        let file = Path::new("/b/exits.yaml");
        assert_eq!(
            inside(file, "stages/s0.onnx", "k").unwrap(),
            Path::new("/b/stages/s0.onnx")
        );
        assert_eq!(
            inside(file, "./s0.onnx", "k").unwrap(),
            Path::new("/b/./s0.onnx")
        );
        for bad in ["../s.onnx", "a/../../s.onnx", "/etc/passwd", ""] {
            let e = inside(file, bad, "stages[0].segment").unwrap_err();
            assert_eq!(e.key, "stages[0].segment");
            assert!(e.message.contains("leaves the bundle's folder"), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_and_quoted_brackets_do_not_count() {
        let file = Path::new("exits.yaml");
        let deep = format!("a: {}{}", "[".repeat(33), "]".repeat(33));
        let e = check_nesting(file, &deep).unwrap_err();
        assert!(e.message.contains("nested 33 levels deep"), "{e}");
        let quoted = format!("a: '{}' # {}\nb: [[1]]", "[".repeat(40), "{".repeat(40));
        assert!(check_nesting(file, &quoted).is_ok());
        assert!(check_nesting(file, &"[".repeat(32)).is_ok());
    }
}
