//! resilience4j's CircuitBreaker as pure data. (Stub: being written.)
