//! The simulation runtime.
