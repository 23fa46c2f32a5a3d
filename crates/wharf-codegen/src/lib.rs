//! Reads Wharf's contracts and generates the code that ties each event to its delivery class.
//!
//! `prost-types` drops unknown fields, so the custom `(wharf.options.v1.event)` option is
//! invisible in a plain `FileDescriptorSet`. We compile the contracts with protox and read the
//! options through its `prost-reflect` descriptor pool, which keeps extensions. Every rule an
//! event must follow (an option on every message of an `events.proto`, a subject inside the
//! package's stream, an envelope with `event_id` and `occurred_at`, an ordering key that exists)
//! is checked here, so a broken contract fails the build with a message naming the message and
//! the rule, instead of surfacing as a runtime surprise.
//!
//! # Layout
//! - [`events`]: extraction and validation of the event options.
//! - [`render`]: the Rust source emitted into `wharf-proto`.
#![forbid(unsafe_code)]

pub mod events;
pub mod render;

use std::path::{Path, PathBuf};

pub use events::{DeliveryClass, EventSpec, KeyKind};

/// Everything `wharf-proto`'s build script needs from one compilation of the contracts.
#[derive(Debug)]
pub struct Contracts {
    /// The descriptor set with source info and options intact (for reflection and codegen).
    pub descriptor_set: Vec<u8>,
    /// The same set as `prost-types`, which `tonic-prost-build` consumes.
    pub file_descriptor_set: prost_reflect::prost_types::FileDescriptorSet,
    /// Every event declared in the contracts, validated.
    pub events: Vec<EventSpec>,
    /// Fully qualified names of every gRPC service, e.g. `wharf.auth.v1.AuthService`.
    pub services: Vec<String>,
    /// Every `.proto` file that was read, for `cargo:rerun-if-changed`.
    pub proto_files: Vec<PathBuf>,
}

/// Why the contracts could not be turned into code.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("failed to read the contracts under {root}: {source}")]
    Io {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to compile the contracts: {0}")]
    Compile(#[from] Box<protox::Error>),
    #[error(transparent)]
    Event(#[from] events::EventError),
}

impl Contracts {
    /// Compiles every `.proto` file under `root` (the include root, e.g. `proto/`).
    pub fn compile(root: &Path) -> Result<Self, CodegenError> {
        let proto_files = find_protos(root).map_err(|source| CodegenError::Io {
            root: root.to_owned(),
            source,
        })?;
        let relative: Vec<PathBuf> = proto_files
            .iter()
            .map(|path| path.strip_prefix(root).unwrap_or(path).to_owned())
            .collect();

        let mut compiler = protox::Compiler::new([root]).map_err(Box::new)?;
        compiler.include_imports(true).include_source_info(true);
        compiler.open_files(&relative).map_err(Box::new)?;

        let pool = compiler.descriptor_pool();
        let events = events::extract(&pool)?;
        let services = pool
            .services()
            .map(|service| service.full_name().to_owned())
            .collect();

        Ok(Self {
            descriptor_set: compiler.encode_file_descriptor_set(),
            file_descriptor_set: compiler.file_descriptor_set(),
            events,
            services,
            proto_files,
        })
    }
}

/// All `.proto` files below `root`, sorted so that generated code is deterministic.
fn find_protos(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
