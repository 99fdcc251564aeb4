//! The response served while a circuit does not permit calls. (Stub: being written.)
