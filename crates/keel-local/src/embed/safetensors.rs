//! The safetensors format the embedding model ships in: an 8-byte little-endian header length,
//! a JSON header naming each tensor's dtype, shape and byte range, then the data. Every length
//! and range is checked against the file before anything is allocated or read, so a truncated
//! or hostile file is a `LocalError` naming it, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::LocalError;

/// The largest header keel reads (the real one is 17 KB).
const MAX_HEADER: u64 = 16 << 20;

/// One tensor's place in the data area.
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A safetensors file read into memory, its tensors taken out by name.
pub(crate) struct SafeTensors {
    path: PathBuf,
    data: Vec<u8>,
    /// Where the data area starts in `data`.
    base: usize,
    entries: HashMap<String, Entry>,
}

impl SafeTensors {
    pub(crate) fn read(path: &Path) -> Result<Self, LocalError> {
        let data = std::fs::read(path).map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |reason: String| LocalError::corrupt_weights(path, reason);
        if data.len() < 8 {
            return Err(corrupt(format!(
                "{} bytes is too short for a safetensors header",
                data.len()
            )));
        }
        let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        if header_len > MAX_HEADER || header_len > (data.len() - 8) as u64 {
            return Err(corrupt(format!(
                "its header claims {header_len} bytes; the file has {}",
                data.len()
            )));
        }
        let base = 8 + header_len as usize;
        let header: Value = serde_json::from_slice(&data[8..base])
            .map_err(|e| corrupt(format!("its header is not JSON: {e}")))?;
        let Value::Object(fields) = header else {
            return Err(corrupt("its header is not a JSON object".into()));
        };
        let room = data.len() - base;
        let mut entries = HashMap::new();
        for (name, info) in fields {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&info, room)
                .map_err(|reason| corrupt(format!("tensor {name}: {reason}")))?;
            entries.insert(name, entry);
        }
        Ok(SafeTensors {
            path: path.to_path_buf(),
            data,
            base,
            entries,
        })
    }

    /// The F32 tensor `name`, which must have `shape`.
    pub(crate) fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LocalError> {
        let corrupt = |reason: String| LocalError::corrupt_weights(&self.path, reason);
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| corrupt(format!("it has no tensor {name}")))?;
        if entry.dtype != "F32" {
            return Err(corrupt(format!(
                "tensor {name} is {}, keel reads F32",
                entry.dtype
            )));
        }
        if entry.shape != shape {
            return Err(corrupt(format!(
                "tensor {name} has shape {:?}, the configuration says {shape:?}",
                entry.shape
            )));
        }
        let bytes = &self.data[self.base + entry.start..self.base + entry.end];
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Reads `{"dtype", "shape", "data_offsets"}` and checks that the range fits in `room` bytes
/// and matches the shape.
fn parse_entry(info: &Value, room: usize) -> Result<Entry, String> {
    let dtype = info["dtype"].as_str().ok_or("no dtype")?.to_string();
    let shape: Vec<usize> = info["shape"]
        .as_array()
        .ok_or("no shape")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or("a dimension is not a non-negative integer")?;
    let offsets = info["data_offsets"].as_array().ok_or("no data_offsets")?;
    let offset = |i: usize| {
        offsets
            .get(i)
            .and_then(Value::as_u64)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or("data_offsets is not [begin, end]")
    };
    let (start, end) = (offset(0)?, offset(1)?);
    if start > end || end > room {
        return Err(format!(
            "bytes {start}..{end} lie outside the {room} bytes of data (is the file truncated?)"
        ));
    }
    let width = match dtype.as_str() {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    };
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("its shape overflows")?;
    if elements.checked_mul(width) != Some(end - start) {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {} bytes, its range holds {}",
            elements.saturating_mul(width),
            end - start
        ));
    }
    Ok(Entry {
        dtype,
        shape,
        start,
        end,
    })
}
