//! The Workers runtime side (wasm32 only): the fetch handler, the two
//! Durable Object classes and the glue to the Workers APIs. Everything
//! that can be decided without the runtime lives in the pure modules.

mod convert;
mod driver;
mod entry;
mod registry;
mod scope;
mod settings;
mod upstream;
