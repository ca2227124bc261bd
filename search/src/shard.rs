//! Feature shards: what `extract` leaves for `fit`, one Parquet file per footage or time range
//! of one. A row is a frame: its footage and number, its time, the backbone's answer, its
//! ground truth, its signatures for the stream rule, and every candidate cut pooled every way a
//! head reads it, one column each, so that a reader can take only the columns it needs. The
//! footer holds a [`Header`]: what makes shards comparable and which frames the shard holds.
//! A shard is written under a hidden temporary name and renamed once its footer is written, so
//! a file with a shard's name is a whole shard.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::table::{Columns, FeatureTable, Signatures};

/// The shard format this build writes and reads.
pub const FORMAT: &str = "earlyexit-shard/1";
/// The footer key that holds the [`Header`], as JSON.
const HEADER_KEY: &str = "earlyexit.shard";
/// A shard file's extension; `fit` reads a folder's files with it.
pub const EXTENSION: &str = "parquet";
/// Bytes of frames per row group and per batch read: what writing or reading a shard holds.
const CHUNK_BYTES: usize = 64 << 20;

/// What must be equal for shards' frames to be searched together.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Backbone {
    /// SHA-256 of the backbone's file, in hex.
    pub sha256: String,
    pub input: Input,
    /// `logits` or `probabilities`.
    pub output: String,
    pub classes: usize,
    /// Every candidate cut, in the backbone's order.
    pub cuts: Vec<Cut>,
    /// The stream rule's signature grids.
    pub grids: Vec<Grid>,
}

/// The backbone's input, as the search's flags give it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Input {
    pub layout: String,
    pub width: u32,
    pub height: u32,
    pub color: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cut {
    pub tensor: String,
    pub shape: Vec<i64>,
    /// Each pooling kept, and its values per frame.
    pub pools: Vec<(String, usize)>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Grid {
    pub grid: u32,
    pub values: usize,
}

/// Which frames of which footage a shard holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Part {
    /// The footage's id: the same in every shard of one footage. The sample `fit` keeps is
    /// drawn by it.
    pub id: String,
    /// The footage's URI.
    pub footage: String,
    /// SHA-256 of the footage's labels, when ground truth was given.
    pub labels: Option<String>,
    /// Held out whole: only certifies, never trains.
    pub holdout: bool,
    /// The frames the whole footage gives the search: its container's count (or with
    /// `search --max-frames`, the frames kept of them), when known; the same in every shard
    /// of it, so that `fit` sizes its sample alike whatever the shards.
    pub footage_frames: Option<usize>,
    /// Frames spread evenly over the footage (`search --max-frames`): neighbouring rows are not
    /// neighbouring frames.
    pub spread: bool,
    /// The share of runs kept when extracting ([`keeps`]); 1 keeps every frame.
    pub share: f64,
    /// The time range extracted, in nanoseconds, when one was given.
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    /// Frames decoded in the range (before `share`), and the first one's number: where the
    /// held-out end of a footage starts does not depend on the share.
    pub decoded: usize,
    pub first: Option<u64>,
    /// Rows in the shard.
    pub frames: usize,
}

impl Part {
    /// Whether `other` is a shard of the same frames, extracted alike: what a finished
    /// extraction wrote aside, the same as what it was asked.
    pub fn same_request(&self, other: &Part) -> bool {
        let asked = |p: &Part| Part {
            decoded: 0,
            first: None,
            frames: 0,
            ..p.clone()
        };
        asked(self) == asked(other)
    }
}

/// SHA-256 of a footage's labels, as a shard's header records it.
pub fn labels_hash(labels: &[u32]) -> String {
    let mut hasher = Sha256::new();
    for l in labels {
        hasher.update(l.to_le_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Header {
    pub format: String,
    pub backbone: Backbone,
    pub part: Part,
}

impl Backbone {
    /// Frames in a row group, a batch written or a batch read: [`CHUNK_BYTES`] of them.
    fn chunk_rows(&self) -> usize {
        (CHUNK_BYTES / self.bytes_per_frame(&self.all_columns())).max(1)
    }

    /// The bytes a frame takes once read into a [`FeatureTable`] with the feature columns
    /// `columns`: those, its answers and its signatures.
    pub fn bytes_per_frame(&self, columns: &Columns) -> usize {
        let signatures: usize = self.grids.iter().map(|g| g.values).sum();
        (columns.values(&self.dims()) + self.classes + signatures) * size_of::<f32>()
            + 2 * size_of::<u64>()
    }

    /// The values per frame of each cut's poolings.
    pub fn dims(&self) -> Vec<Vec<usize>> {
        self.cuts
            .iter()
            .map(|c| c.pools.iter().map(|p| p.1).collect())
            .collect()
    }

    /// Every feature column of its shards.
    pub fn all_columns(&self) -> Columns {
        Columns::all(&self.dims())
    }

    /// The first difference from `other`, in words, when there is one.
    pub fn difference(&self, other: &Backbone) -> Option<String> {
        if self.sha256 != other.sha256 {
            return Some(format!(
                "backbones differ (SHA-256 {} and {})",
                short(&self.sha256),
                short(&other.sha256)
            ));
        }
        if self.input != other.input {
            return Some(format!(
                "input specs differ ({:?} and {:?})",
                self.input, other.input
            ));
        }
        if self.output != other.output {
            return Some(format!(
                "outputs differ ({} and {})",
                self.output, other.output
            ));
        }
        if self.cuts != other.cuts {
            return Some("cut lists or poolings differ".into());
        }
        (self != other).then(|| "signature grids differ".into())
    }

    fn schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("footage", DataType::Utf8, false),
            Field::new("frame", DataType::UInt64, false),
            Field::new("pts_ns", DataType::Int64, true),
            Field::new("teacher", DataType::UInt32, false),
            Field::new("label", DataType::UInt32, true),
            list_field("probs", self.classes),
        ];
        fields.extend(
            self.grids
                .iter()
                .map(|g| list_field(&format!("sig{}", g.grid), g.values)),
        );
        for (k, cut) in self.cuts.iter().enumerate() {
            for (p, (_, d)) in cut.pools.iter().enumerate() {
                fields.push(list_field(&format!("cut{k}_pool{p}"), *d));
            }
        }
        Arc::new(Schema::new(fields))
    }

    /// An empty table shaped for these frames.
    pub fn empty_table(&self) -> FeatureTable {
        FeatureTable {
            columns: self
                .cuts
                .iter()
                .map(|c| vec![Vec::new(); c.pools.len()])
                .collect(),
            dims: self.dims(),
            classes: self.classes,
            signatures: self
                .grids
                .iter()
                .map(|g| Signatures {
                    grid: g.grid,
                    len: g.values,
                    values: Vec::new(),
                })
                .collect(),
            ..FeatureTable::default()
        }
    }
}

/// The start of a hash, for messages.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn list_field(name: &str, len: usize) -> Field {
    let item = Arc::new(Field::new_list_field(DataType::Float32, false));
    Field::new(name, DataType::FixedSizeList(item, len as i32), false)
}

/// SHA-256 of a file, in hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("{}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Frames are kept in runs of `run` consecutive frames. Whether frame `frame` of footage `id`
/// is kept when a `share` of runs is: by a hash of the footage and the run, so that the same
/// frames are kept whatever the shards, their order or their number, and a smaller share keeps
/// a subset of a larger one's frames.
pub fn keeps(id: &str, frame: u64, run: u64, share: f64) -> bool {
    // The hash only when a run can be left out.
    share >= 1.0 || kept(run_hash(id, frame, run), share)
}

/// Whether a run of hash `hash` ([`run_hash`]) is kept at `share`.
pub fn kept(hash: f64, share: f64) -> bool {
    share >= 1.0 || hash < share
}

/// The run of `frame` (runs of `run` frames) of footage `id`, hashed to a number in [0, 1):
/// the order in which `fit` takes runs, and what [`keeps`] compares with a share.
pub fn run_hash(id: &str, frame: u64, run: u64) -> f64 {
    let digest = Sha256::new()
        .chain_update(id.as_bytes())
        .chain_update([0])
        .chain_update((frame / run.max(1)).to_le_bytes())
        .finalize();
    let mut word = [0; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(word) as f64 / 2f64.powi(64)
}

/// A frame's place in its footage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameKey {
    pub number: u64,
    pub pts_ns: Option<i64>,
}

/// A shard being written.
pub struct Writer {
    header: Header,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    temp: tempfile::TempPath,
    path: PathBuf,
}

impl Writer {
    /// Starts a shard that will be `path` once finished.
    pub fn create(path: &Path, backbone: Backbone, part: Part) -> Result<Writer> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".earlyexit-shard-")
            .tempfile_in(dir)
            .with_context(|| format!("{}: cannot write in its folder", path.display()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(Some(backbone.chunk_rows()))
            .build();
        let schema = backbone.schema();
        let (file, temp) = temp.into_parts();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        Ok(Writer {
            header: Header {
                format: FORMAT.into(),
                backbone,
                part,
            },
            schema,
            writer,
            temp,
            path: path.to_owned(),
        })
    }

    /// Rows a batch should hold, for [`Writer::append`].
    pub fn batch_rows(&self) -> usize {
        self.header.backbone.chunk_rows()
    }

    /// Appends `table`'s frames, whose places are `keys`.
    pub fn append(&mut self, table: &FeatureTable, keys: &[FrameKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let batch = to_batch(&self.schema, &self.header.part.id, table, keys)?;
        self.writer.write(&batch)?;
        self.header.part.frames += keys.len();
        Ok(())
    }

    /// Writes the footer, with the frames decoded and the first one's number, and gives the
    /// shard its name.
    pub fn finish(mut self, decoded: usize, first: Option<u64>) -> Result<Header> {
        self.header.part.decoded = decoded;
        self.header.part.first = first;
        let json = serde_json::to_string(&self.header)?;
        self.writer
            .append_key_value_metadata(KeyValue::new(HEADER_KEY.into(), json));
        let file = self.writer.into_inner()?;
        // Temporary files are private; a shard is read by every node, as other files are.
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        file.sync_all()?;
        self.temp.persist(&self.path).with_context(|| {
            format!("{}: cannot rename the finished shard", self.path.display())
        })?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename lasts once the folder is on disk too.
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(self.header)
    }
}

fn to_batch(
    schema: &SchemaRef,
    id: &str,
    table: &FeatureTable,
    keys: &[FrameKey],
) -> Result<RecordBatch> {
    let n = keys.len();
    let list = |values: &[f32], len: usize| -> Result<ArrayRef> {
        let item = Arc::new(Field::new_list_field(DataType::Float32, false));
        Ok(Arc::new(FixedSizeListArray::try_new(
            item,
            len as i32,
            Arc::new(Float32Array::from(values.to_vec())),
            None,
        )?))
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![id; n])),
        Arc::new(UInt64Array::from_iter_values(keys.iter().map(|k| k.number))),
        Arc::new(Int64Array::from_iter(keys.iter().map(|k| k.pts_ns))),
        Arc::new(UInt32Array::from(table.teacher.clone())),
        Arc::new(UInt32Array::from(table.labels.clone())),
        list(&table.soft, table.classes)?,
    ];
    for s in &table.signatures {
        columns.push(list(&s.values, s.len)?);
    }
    for (pools, dims) in table.columns.iter().zip(&table.dims) {
        for (values, &d) in pools.iter().zip(dims) {
            columns.push(list(values, d)?);
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A finished shard, opened: its footer read, its rows not yet.
#[derive(Clone)]
pub struct Shard {
    pub path: PathBuf,
    pub header: Header,
}

/// Where a row read from a shard goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Skip,
    Train,
    Held,
}

impl Shard {
    /// Opens `path` and reads its header, refusing what is not a whole shard of this format.
    pub fn open(path: &Path) -> Result<Shard> {
        let what = || format!("shard {}", path.display());
        let file = File::open(path).with_context(what)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "shard {}: not a whole Parquet file (truncated, or not a shard)",
                    path.display()
                )
            })?;
        let meta = builder.metadata().file_metadata();
        let json = meta
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == HEADER_KEY))
            .and_then(|k| k.value.clone())
            .ok_or_else(|| {
                anyhow!(
                    "its footer has no '{HEADER_KEY}': a Parquet file, but not an earlyexit shard"
                )
            })
            .with_context(what)?;
        let header: Header = serde_json::from_str(&json)
            .with_context(|| format!("'{HEADER_KEY}' in its footer is not a shard header"))
            .with_context(what)?;
        if header.format != FORMAT {
            bail!(
                "shard {}: format '{}', this build reads '{FORMAT}'; extract it again",
                path.display(),
                header.format
            );
        }
        let rows = usize::try_from(meta.num_rows()).unwrap_or(0);
        if rows != header.part.frames {
            bail!(
                "shard {}: {rows} rows, its header says {}",
                path.display(),
                header.part.frames
            );
        }
        if builder.schema().fields() != header.backbone.schema().fields() {
            bail!(
                "shard {}: its columns do not match its header",
                path.display()
            );
        }
        Ok(Shard {
            path: path.to_owned(),
            header,
        })
    }

    /// Its rows, `batch` at a time: those `selection` selects, of the columns of the schema's
    /// places `columns` (all without).
    fn reader(
        &self,
        columns: Option<Vec<usize>>,
        batch: usize,
        selection: Option<RowSelection>,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
        let file =
            File::open(&self.path).with_context(|| format!("shard {}", self.path.display()))?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        if let Some(columns) = columns {
            let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
            builder = builder.with_projection(mask);
        }
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let path = self.path.clone();
        Ok(builder.with_batch_size(batch).build()?.map(move |b| {
            b.with_context(|| format!("shard {}: cannot read its rows", path.display()))
        }))
    }

    /// The frame numbers of its rows, in order.
    pub fn frame_numbers(&self) -> Result<Vec<u64>> {
        let mut numbers = Vec::with_capacity(self.header.part.frames);
        for batch in self.reader(Some(vec![FRAME]), 64 * 1024, None)? {
            let batch = batch?;
            let column = batch
                .column(0)
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| anyhow!("shard {}: 'frame' is not UInt64", self.path.display()))?;
            numbers.extend(column.values().iter().copied());
        }
        Ok(numbers)
    }

    /// Reads its rows, sending row i where `destinations[i]` says: to `train` whole, to `held`
    /// without features (which [`Rows::read`] adds once the search knows which it needs). Rows
    /// sent nowhere are not decoded at all.
    pub fn read_into(
        &self,
        destinations: &[Destination],
        train: &mut FeatureTable,
        held: &mut FeatureTable,
    ) -> Result<()> {
        let Some(selection) = selection(destinations.iter().map(|to| *to != Destination::Skip))
        else {
            return Ok(());
        };
        // The rows selected come in order: each takes the next destination that is not Skip.
        let mut selected = destinations.iter().filter(|to| **to != Destination::Skip);
        let batch_rows = self.header.backbone.chunk_rows();
        let (all, none) = (
            self.header.backbone.all_columns(),
            Columns::none(&self.header.backbone.dims()),
        );
        for batch in self.reader(None, batch_rows, Some(selection))? {
            let batch = batch?;
            let frames = batch.column(1).as_primitive::<UInt64Type>();
            let teacher = batch.column(3).as_primitive::<UInt32Type>();
            let label = batch.column(4).as_primitive::<UInt32Type>();
            let classes = self.header.backbone.classes;
            for row in 0..batch.num_rows() {
                let (table, columns) = match selected.next() {
                    Some(Destination::Train) => (&mut *train, &all),
                    Some(Destination::Held) => (&mut *held, &none),
                    _ => bail!("shard {}: more rows than selected", self.path.display()),
                };
                let named = [
                    Some(teacher.value(row)),
                    (!label.is_null(row)).then(|| label.value(row)),
                ];
                if let Some(class) = named.into_iter().flatten().find(|&c| c as usize >= classes) {
                    bail!(
                        "shard {}: frame {} names class {class}, and the backbone has {classes}",
                        self.path.display(),
                        frames.value(row)
                    );
                }
                push_row(table, &batch, row, columns);
            }
        }
        Ok(())
    }

    /// Reads the feature columns `columns` of the rows `rows` says, appending them to
    /// `table`'s, and returns how many rows it read.
    fn read_features(
        &self,
        rows: &[bool],
        columns: &Columns,
        table: &mut FeatureTable,
    ) -> Result<usize> {
        let Some(selection) = selection(rows.iter().copied()) else {
            return Ok(0);
        };
        let backbone = &self.header.backbone;
        // The schema's lists after the answers and signatures: the features, cut by cut.
        let first = FEATURES_FROM + backbone.grids.len();
        let (indices, wanted): (Vec<usize>, Vec<(usize, usize)>) = backbone
            .dims()
            .iter()
            .enumerate()
            .flat_map(|(cut, pools)| (0..pools.len()).map(move |pool| (cut, pool)))
            .enumerate()
            .filter(|(_, (cut, pool))| columns.has(*cut, *pool))
            .map(|(i, column)| (first + i, column))
            .unzip();
        if indices.is_empty() {
            return Ok(rows.iter().filter(|r| **r).count());
        }
        let mut read = 0;
        for batch in self.reader(Some(indices), backbone.chunk_rows(), Some(selection))? {
            let batch = batch?;
            for (list, &(cut, pool)) in batch.columns().iter().zip(&wanted) {
                let list = list.as_fixed_size_list();
                let values = list.values().as_primitive::<Float32Type>().values();
                let d = table.dims[cut][pool];
                let at = list.value_offset_at(0);
                table.columns[cut][pool].extend_from_slice(&values[at..at + batch.num_rows() * d]);
            }
            read += batch.num_rows();
        }
        Ok(read)
    }
}

/// Places in [`Backbone::schema`]: a row's frame number, and its first list (the backbone's
/// probabilities, then the signatures, then the features).
const FRAME: usize = 1;
const LISTS_FROM: usize = 5;
const FEATURES_FROM: usize = LISTS_FROM + 1;

/// The selection of the rows `rows` marks, or none when it marks none.
fn selection(rows: impl Iterator<Item = bool>) -> Option<RowSelection> {
    let mut selectors: Vec<RowSelector> = Vec::new();
    for read in rows {
        match selectors.last_mut() {
            Some(last) if last.skip != read => last.row_count += 1,
            _ => selectors.push(if read {
                RowSelector::select(1)
            } else {
                RowSelector::skip(1)
            }),
        }
    }
    selectors
        .iter()
        .any(|s| !s.skip)
        .then(|| RowSelection::from(selectors))
}

/// Rows of shards, in the order a table holds them: where the held-out frames' features are,
/// read once the search knows which columns it needs there.
#[derive(Default)]
pub struct Rows {
    parts: Vec<(Shard, Vec<bool>, Stamp)>,
}

/// A file's length and time of change: a shard replaced between two reads differs in them.
type Stamp = Option<(u64, std::time::SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl Rows {
    /// Adds `shard`'s rows that `rows` marks, after those added before.
    pub fn push(&mut self, shard: &Shard, rows: Vec<bool>) {
        if rows.iter().any(|r| *r) {
            self.parts.push((shard.clone(), rows, stamp(&shard.path)));
        }
    }

    /// The rows' feature columns `columns`, with the answers of `read_before`, the table they
    /// were read into without features: as many rows, or an error.
    pub fn read(&self, columns: &Columns, read_before: &FeatureTable) -> Result<FeatureTable> {
        let teacher = &read_before.teacher;
        let mut table = read_before.empty_like();
        table.reserve(teacher.len(), columns);
        let mut read = 0;
        for (shard, rows, when) in &self.parts {
            if stamp(&shard.path) != *when {
                bail!(
                    "shard {}: replaced while fit read it; run fit again",
                    shard.path.display()
                );
            }
            let n = shard.read_features(rows, columns, &mut table)?;
            read += n;
            if n != rows.iter().filter(|r| **r).count() {
                bail!("shard {}: fewer rows than it held", shard.path.display());
            }
        }
        if read != teacher.len() {
            bail!("held-out frames: {read} read again of {}", teacher.len());
        }
        table.teacher = teacher.clone();
        Ok(table)
    }
}

/// Appends row `row` of `batch`, whose schema is [`Backbone::schema`] of `table`'s shape, with
/// the feature columns `columns`.
fn push_row(table: &mut FeatureTable, batch: &RecordBatch, row: usize, columns: &Columns) {
    let teacher = batch.column(3).as_primitive::<UInt32Type>();
    let label = batch.column(4).as_primitive::<UInt32Type>();
    table.teacher.push(teacher.value(row));
    table
        .labels
        .push((!label.is_null(row)).then(|| label.value(row)));
    let mut lists = batch.columns()[LISTS_FROM..]
        .iter()
        .map(|c| c.as_fixed_size_list());
    let mut extend = |out: &mut Vec<f32>, len: usize, wanted: bool| {
        let list = lists
            .next()
            .expect("the schema has a column for every list");
        if wanted {
            let values = list.values().as_primitive::<Float32Type>().values();
            let at = list.value_offset_at(row);
            out.extend_from_slice(&values[at..at + len]);
        }
    };
    extend(&mut table.soft, table.classes, true);
    for s in &mut table.signatures {
        extend(&mut s.values, s.len, true);
    }
    for (cut, (pools, dims)) in table.columns.iter_mut().zip(&table.dims).enumerate() {
        for (pool, (values, &d)) in pools.iter_mut().zip(dims).enumerate() {
            extend(values, d, columns.has(cut, pool));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backbone of two cuts (one pooled two ways) and one signature grid, and `n` frames of
    /// it whose every value says its frame, column and place.
    fn frames(n: usize) -> (Backbone, FeatureTable) {
        let backbone = Backbone {
            sha256: "0".repeat(64),
            input: Input {
                layout: "nchw".into(),
                width: 4,
                height: 4,
                color: "gray".into(),
                mean: vec![0.0],
                std: vec![1.0],
            },
            output: "logits".into(),
            classes: 3,
            cuts: vec![
                Cut {
                    tensor: "a".into(),
                    shape: vec![1, 2, 2, 2],
                    pools: vec![("global".into(), 2), ("grid2".into(), 8)],
                },
                Cut {
                    tensor: "b".into(),
                    shape: vec![1, 3],
                    pools: vec![("global".into(), 3)],
                },
            ],
            grids: vec![Grid { grid: 2, values: 4 }],
        };
        let mut table = backbone.empty_table();
        let value = |frame: usize, column: usize, i: usize| (frame * 100 + column * 10 + i) as f32;
        for frame in 0..n {
            table.teacher.push(frame as u32 % 3);
            table.labels.push(Some((frame as u32 + 1) % 3));
            table.soft.extend((0..3).map(|i| value(frame, 0, i)));
            table.signatures[0]
                .values
                .extend((0..4).map(|i| value(frame, 1, i)));
            let mut column = 2;
            for (pools, dims) in table.columns.iter_mut().zip(&table.dims) {
                for (values, &d) in pools.iter_mut().zip(dims) {
                    values.extend((0..d).map(|i| value(frame, column, i)));
                    column += 1;
                }
            }
        }
        (backbone, table)
    }

    /// Held-out rows are read without features, and their features later, only the columns
    /// asked, from the rows they came from, across shards.
    #[test]
    fn held_out_rows_take_only_the_feature_columns_asked_later() {
        let dir = tempfile::tempdir().unwrap();
        let (backbone, table) = frames(10);
        let part = Part {
            id: "clip".into(),
            footage: "clip.mkv".into(),
            labels: None,
            holdout: false,
            footage_frames: Some(10),
            spread: false,
            share: 1.0,
            start_ns: None,
            end_ns: None,
            decoded: 0,
            first: None,
            frames: 0,
        };
        let keys: Vec<FrameKey> = (0..10)
            .map(|n| FrameKey {
                number: n,
                pts_ns: None,
            })
            .collect();
        // Two shards of five frames each.
        let mut shards = Vec::new();
        for (k, rows) in [0..5, 5..10].into_iter().enumerate() {
            let mut half = backbone.empty_table();
            half.teacher = table.teacher[rows.clone()].to_vec();
            half.labels = table.labels[rows.clone()].to_vec();
            half.soft = table.soft[rows.start * 3..rows.end * 3].to_vec();
            half.signatures[0].values =
                table.signatures[0].values[rows.start * 4..rows.end * 4].to_vec();
            for (cut, pools) in half.columns.iter_mut().enumerate() {
                for (pool, values) in pools.iter_mut().enumerate() {
                    let d = table.dims[cut][pool];
                    *values = table.columns[cut][pool][rows.start * d..rows.end * d].to_vec();
                }
            }
            let path = dir.path().join(format!("{k}.parquet"));
            let mut writer = Writer::create(&path, backbone.clone(), part.clone()).unwrap();
            writer.append(&half, &keys[rows]).unwrap();
            writer.finish(5, Some(0)).unwrap();
            shards.push(Shard::open(&path).unwrap());
        }
        use Destination::{Held, Skip, Train};
        let routes = [
            [Train, Held, Skip, Held, Train],
            [Held, Held, Skip, Train, Held],
        ];
        let (mut train, mut held) = (backbone.empty_table(), backbone.empty_table());
        let mut rows = Rows::default();
        for (shard, route) in shards.iter().zip(&routes) {
            shard.read_into(route, &mut train, &mut held).unwrap();
            rows.push(shard, route.iter().map(|d| *d == Held).collect());
        }
        let (train_frames, held_frames) = ([0, 4, 8], [1, 3, 5, 6, 9]);
        assert_eq!(train.teacher, train_frames.map(|f| table.teacher[f]));
        assert_eq!(held.labels, held_frames.map(|f| table.labels[f]));
        assert_eq!(
            held.signatures[0].values[4..8],
            table.signatures[0].values[12..16]
        );
        assert!(train.holds(0, 1) && train.holds(1, 0));
        assert!(held.columns.iter().flatten().all(|c| c.is_empty()));

        let asked = Columns::matching(&backbone.dims(), |cut, pool| (cut, pool) != (0, 0));
        let features = rows.read(&asked, &held).unwrap();
        assert_eq!(features.teacher, held.teacher);
        assert!(!features.holds(0, 0) && features.holds(0, 1) && features.holds(1, 0));
        for (cut, pool) in [(0, 1), (1, 0)] {
            let d = table.dims[cut][pool];
            let expected: Vec<f32> = held_frames
                .iter()
                .flat_map(|&f| table.columns[cut][pool][f * d..(f + 1) * d].to_vec())
                .collect();
            assert_eq!(features.column(cut, pool).0, expected);
        }
        // Asked for more frames than the rows hold: refused.
        let mut more = held.empty_like();
        more.teacher = vec![0; 6];
        assert!(rows.read(&asked, &more).is_err());
        // A shard replaced since its rows were taken: refused by name.
        let mut writer = Writer::create(&shards[1].path, backbone.clone(), part).unwrap();
        writer.append(&table, &keys).unwrap();
        writer.finish(10, Some(0)).unwrap();
        let replaced = rows.read(&asked, &held);
        let message = format!("{:#}", replaced.err().unwrap());
        assert!(message.contains("1.parquet: replaced"), "{message}");
    }
}
