//! rater
