//! A reader for GGUF files (the llama.cpp model format): the metadata table, the tensor
//! directory, and each tensor's bytes. Every length and offset is checked against the file,
//! so a truncated or corrupt file gives `LocalError::Corrupt` naming it, never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::LocalError;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MetaValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

/// The tensor element formats keel can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TensorKind {
    F32,
    Q4_1,
    Q8_0,
}

impl TensorKind {
    fn from_ggml(code: u32) -> Option<Self> {
        match code {
            0 => Some(TensorKind::F32),
            3 => Some(TensorKind::Q4_1),
            8 => Some(TensorKind::Q8_0),
            _ => None,
        }
    }

    /// (elements per block, bytes per block).
    pub(crate) fn block(self) -> (usize, usize) {
        match self {
            TensorKind::F32 => (1, 4),
            TensorKind::Q4_1 => (32, 20),
            TensorKind::Q8_0 => (32, 34),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TensorInfo {
    /// GGUF order: `dims[0]` is the row length (contiguous), `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

/// An opened GGUF file: metadata and tensor directory parsed, tensor data read on demand.
pub(crate) struct GgufFile {
    path: PathBuf,
    reader: BufReader<File>,
    file_len: u64,
    data_start: u64,
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: HashMap<String, TensorInfo>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, LocalError> {
        let io = |source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut r = Header {
            reader: BufReader::with_capacity(1 << 16, file),
            path,
            file_len,
            pos: 0,
        };

        let magic = r.bytes(4)?;
        if magic != MAGIC {
            return Err(LocalError::corrupt(
                path,
                format!("it does not start with the GGUF magic (found {magic:?})"),
            ));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(LocalError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("GGUF version {version} (keel reads versions 2 and 3)"),
            });
        }
        let tensor_count = r.count("tensor count")?;
        let kv_count = r.count("metadata count")?;

        let mut metadata = HashMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = HashMap::new();
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(LocalError::corrupt(
                    path,
                    format!("tensor {name} has {n_dims} dimensions"),
                ));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = r.u32()?;
            let offset = r.u64()?;
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    ggml_type,
                    offset,
                },
            );
        }
        let alignment = match metadata.get("general.alignment") {
            Some(MetaValue::Int(a)) if *a > 0 && (*a as u64).is_power_of_two() => *a as u64,
            Some(other) => {
                return Err(LocalError::corrupt(
                    path,
                    format!("bad general.alignment {other:?}"),
                ));
            }
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let gguf = GgufFile {
            path: path.to_path_buf(),
            reader: r.reader,
            file_len,
            data_start,
            metadata,
            tensors,
        };
        gguf.check_tensor_ranges()?;
        Ok(gguf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor must lie inside the file: this is what catches a truncated download
    /// before any weight is read.
    fn check_tensor_ranges(&self) -> Result<(), LocalError> {
        for (name, info) in &self.tensors {
            let Some(kind) = TensorKind::from_ggml(info.ggml_type) else {
                continue;
            };
            let bytes = tensor_bytes(kind, &info.dims).ok_or_else(|| {
                LocalError::corrupt(
                    &self.path,
                    format!("tensor {name} has bad shape {:?}", info.dims),
                )
            })?;
            let end = self
                .data_start
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(bytes));
            match end {
                Some(end) if end <= self.file_len => {}
                _ => {
                    return Err(LocalError::corrupt(
                        &self.path,
                        format!(
                            "tensor {name} ends past the end of the file ({} bytes): the file is truncated",
                            self.file_len
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<&MetaValue, LocalError> {
        self.metadata.get(key).ok_or_else(|| {
            LocalError::corrupt(&self.path, format!("metadata key {key} is missing"))
        })
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize, LocalError> {
        match self.meta(key)? {
            MetaValue::Int(v) if *v >= 0 => Ok(*v as usize),
            other => Err(LocalError::corrupt(
                &self.path,
                format!("{key} should be a count, found {other:?}"),
            )),
        }
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32, LocalError> {
        match self.meta(key)? {
            MetaValue::Float(v) => Ok(*v as f32),
            MetaValue::Int(v) => Ok(*v as f32),
            other => Err(LocalError::corrupt(
                &self.path,
                format!("{key} should be a number, found {other:?}"),
            )),
        }
    }

    pub fn meta_str(&self, key: &str) -> Result<&str, LocalError> {
        match self.meta(key)? {
            MetaValue::Str(s) => Ok(s),
            other => Err(LocalError::corrupt(
                &self.path,
                format!("{key} should be a string, found {other:?}"),
            )),
        }
    }

    pub fn meta_array(&self, key: &str) -> Result<&[MetaValue], LocalError> {
        match self.meta(key)? {
            MetaValue::Array(a) => Ok(a),
            other => Err(LocalError::corrupt(
                &self.path,
                format!("{key} should be an array, found {other:?}"),
            )),
        }
    }

    /// Reads one tensor's raw bytes, checking its kind and that it has `expected_dims`.
    pub fn read_tensor(
        &mut self,
        name: &str,
        expected_dims: &[usize],
    ) -> Result<(TensorKind, Vec<u8>), LocalError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| LocalError::corrupt(&self.path, format!("tensor {name} is missing")))?;
        let kind =
            TensorKind::from_ggml(info.ggml_type).ok_or_else(|| LocalError::Unsupported {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name} has ggml type {} (keel runs F32, Q4_1 and Q8_0 tensors)",
                    info.ggml_type
                ),
            })?;
        let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        if dims != expected_dims {
            return Err(LocalError::corrupt(
                &self.path,
                format!("tensor {name} has shape {dims:?}, the metadata implies {expected_dims:?}"),
            ));
        }
        let (block_elems, _) = kind.block();
        if !dims[0].is_multiple_of(block_elems) {
            return Err(LocalError::corrupt(
                &self.path,
                format!("tensor {name} rows are not whole blocks"),
            ));
        }
        // Checked against the file length in `open`.
        let len = tensor_bytes(kind, &info.dims).unwrap_or(0) as usize;
        let start = self.data_start + info.offset;
        let io = |source| LocalError::Io {
            path: self.path.clone(),
            source,
        };
        self.reader.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf).map_err(io)?;
        Ok((kind, buf))
    }
}

fn tensor_bytes(kind: TensorKind, dims: &[u64]) -> Option<u64> {
    let (block_elems, block_bytes) = kind.block();
    let elems = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    (elems / block_elems as u64).checked_mul(block_bytes as u64)
}

/// Sequential reads of the header, each bounded by what is left of the file.
struct Header<'a> {
    reader: BufReader<File>,
    path: &'a Path,
    file_len: u64,
    pos: u64,
}

impl Header<'_> {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, LocalError> {
        if self.pos.saturating_add(n) > self.file_len {
            return Err(LocalError::corrupt(
                self.path,
                format!(
                    "the header runs past the end of the file at byte {} (file is {} bytes)",
                    self.pos, self.file_len
                ),
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut buf)
            .map_err(|source| LocalError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LocalError> {
        let v = self.bytes(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, LocalError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, LocalError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of things still to read: each takes at least one byte, so a count larger than
    /// the rest of the file is corruption (and must not drive a huge allocation).
    fn count(&mut self, what: &str) -> Result<u64, LocalError> {
        let n = self.u64()?;
        if n > self.file_len - self.pos {
            return Err(LocalError::corrupt(
                self.path,
                format!("{what} {n} is larger than the file"),
            ));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, LocalError> {
        let n = self.count("string length")?;
        let bytes = self.bytes(n)?;
        String::from_utf8(bytes).map_err(|_| {
            LocalError::corrupt(
                self.path,
                format!("a string at byte {} is not UTF-8", self.pos),
            )
        })
    }

    fn value(&mut self, ty: u32, depth: u8) -> Result<MetaValue, LocalError> {
        Ok(match ty {
            0 => MetaValue::Int(self.array::<1>()?[0] as i64),
            1 => MetaValue::Int(self.array::<1>()?[0] as i8 as i64),
            2 => MetaValue::Int(u16::from_le_bytes(self.array()?) as i64),
            3 => MetaValue::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => MetaValue::Int(self.u32()? as i64),
            5 => MetaValue::Int(i32::from_le_bytes(self.array()?) as i64),
            6 => MetaValue::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => MetaValue::Bool(self.array::<1>()?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 if depth < 2 => {
                let elem_ty = self.u32()?;
                let n = self.count("array length")?;
                let mut items = Vec::with_capacity(n.min(1 << 20) as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::Int(self.u64()? as i64),
            11 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(LocalError::corrupt(
                    self.path,
                    format!("unknown metadata type {other} at byte {}", self.pos),
                ));
            }
        })
    }
}
