//! The REST resources, one module per area of the model.

pub mod chains;
pub mod devices;
pub mod dhcp;
pub mod groups;
pub mod hosts;
pub mod lb;
pub mod misc;
