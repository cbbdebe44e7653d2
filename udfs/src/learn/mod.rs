//! Learning from behaviour in SQL: an adapter trained on pairs that belong together
//! (`adapter_fit`, `adapt`) and the EASE item-item model (`ease_fit`).

pub mod adapt;
pub mod adapter_fit;
pub mod contrastive;
pub mod ease;
pub mod options;
