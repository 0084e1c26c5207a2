//! The `.keras` zip container.

use crate::FrontendError;
use std::io::{Cursor, Read};

/// Size limit for one archive member (the weights of very large models fit well below it).
const MAX_MEMBER: u64 = 16 << 30;

/// An opened `.keras` zip.
pub struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    origin: String,
}

impl<'a> Archive<'a> {
    /// Opens the zip; a corrupt or truncated archive is an error naming the file.
    pub fn open(bytes: &'a [u8], origin: &str) -> Result<Archive<'a>, FrontendError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| FrontendError::Format {
            file: origin.into(),
            message: match e {
                // The directory sits at the end of a zip: without it the file was cut short.
                zip::result::ZipError::InvalidArchive(m) if m.contains("EOCD") => {
                    "the zip archive is truncated (its central directory, at the end of the file, is missing): an interrupted download or copy?".into()
                }
                e => format!("cannot read zip archive: {e}"),
            },
        })?;
        Ok(Archive { zip, origin: origin.into() })
    }

    /// A member's bytes, or `None` when absent. Sizes are checked before reading.
    pub fn bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, FrontendError> {
        let origin = self.origin.clone();
        let bad = |m: String| FrontendError::Format { file: origin.clone(), message: format!("{name}: {m}") };
        let mut f = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let size = f.size();
        // Deflate expands at most 1032:1: a larger claim is a broken or hostile header.
        if size > MAX_MEMBER || size > f.compressed_size().saturating_mul(1032).saturating_add(1 << 16) {
            return Err(bad(format!("member claims {size} bytes from {} compressed", f.compressed_size())));
        }
        let mut out = Vec::with_capacity(size.min(1 << 26) as usize);
        (&mut f).take(size + 1).read_to_end(&mut out).map_err(|e| bad(format!("cannot decompress: {e}")))?;
        if out.len() as u64 != size {
            return Err(bad(format!("holds {} bytes but its header says {size}", out.len())));
        }
        Ok(Some(out))
    }

    /// A UTF-8 member, or `None` when absent.
    pub fn text(&mut self, name: &str) -> Result<Option<String>, FrontendError> {
        match self.bytes(name)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b).map(Some).map_err(|_| FrontendError::Format {
                file: self.origin.clone(),
                message: format!("{name} is not UTF-8"),
            }),
        }
    }

    /// The vocabularies lookup layers keep as assets (`assets/layers/<layer>/vocabulary.txt`),
    /// by member name.
    pub fn vocabularies(&mut self) -> Result<std::collections::HashMap<String, String>, FrontendError> {
        let names: Vec<String> = self
            .zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.to_string()))
            .filter(|n| n.starts_with("assets/") && n.ends_with("/vocabulary.txt"))
            .collect();
        let mut out = std::collections::HashMap::new();
        for n in names {
            if let Some(t) = self.text(&n)? {
                out.insert(n, t);
            }
        }
        Ok(out)
    }
}
