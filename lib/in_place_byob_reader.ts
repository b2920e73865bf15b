/**
 * Reading a byte stream in place: {@link InPlaceByobReader} fills the caller's buffer where it
 * is, for buffers that must stay put (the buffer pool's, in WebAssembly memory).
 *
 * @module
 */

/**
 * A BYOB reader that fills the caller's buffer where it is. A BYOB read transfers the buffer it
 * fills, and the pool's buffers must stay put (they live in WebAssembly memory, which cannot be
 * transferred), so each read goes into a buffer of this reader's own and is copied across.
 */
export class InPlaceByobReader {
  #reader: ReadableStreamBYOBReader;
  #scratch = new ArrayBuffer(0);

  /** Locks `stream` and reads it from now on. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader({ mode: "byob" });
  }

  /**
   * Reads at least `min` bytes (default 1) unless the stream ends, at most `view.length`, into
   * `view`; the result's value is the filled start of `view`.
   */
  async read(view: Uint8Array, min = 1): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#scratch.byteLength < view.length) this.#scratch = new ArrayBuffer(view.length);
    const read = await this.#reader.read(new Uint8Array(this.#scratch, 0, view.length), { min });
    if (read.value) {
      this.#scratch = read.value.buffer as ArrayBuffer;
      view.set(read.value);
    }
    return read.done
      ? { value: read.value && view.subarray(0, read.value.length), done: true }
      : { value: view.subarray(0, read.value.length), done: false };
  }

  /** Cancels the stream. */
  cancel(): Promise<void> {
    return this.#reader.cancel();
  }

  /** Unlocks the stream. */
  releaseLock(): void {
    this.#reader.releaseLock();
  }
}
