//! Durations as Spring Boot reads them. (Stub: being written.)
