/**
 * The characters a terminal acts on instead of showing, declared once, in named sets. Text shown
 * to a user escapes all of them (lib/format.ts); a name from the network refuses the controls and
 * bidi controls among them (lib/remote_name.ts checkName); a peer's error message loses the controls
 * (lib/error_codes.ts parseError).
 *
 * @module
 */

/** C0 controls. */
const C0 = "\\u0000-\\u001f";

/** DEL and the C1 controls (some terminals take U+009B as CSI, the start of an escape sequence). */
const DEL_AND_C1 = "\\u007f-\\u009f";

/** Bidi embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069). */
const BIDI_CONTROLS = "\\u202a-\\u202e\\u2066-\\u2069";

/** Bidi marks (ALM, LRM, RLM): invisible, they change how the characters around them are ordered. */
const BIDI_MARKS = "\\u061c\\u200e\\u200f";

/** The Unicode line and paragraph separators, which a terminal may show as a new line. */
const SEPARATORS = "\\u2028\\u2029";

/** Everything but C0: what JSON.stringify leaves raw in a string. */
const BEYOND_C0 = `${DEL_AND_C1}${BIDI_CONTROLS}${BIDI_MARKS}${SEPARATORS}`;

/** Every character a terminal acts on: a global regular expression, for `replace`. */
export const UNSAFE: RegExp = new RegExp(`[${C0}${BEYOND_C0}]`, "g");

/** {@link UNSAFE} but for C0, which JSON.stringify escapes itself. */
export const UNSAFE_BEYOND_C0: RegExp = new RegExp(`[${BEYOND_C0}]`, "g");

/**
 * A control character (C0, DEL or C1). A name holding one is refused: it would drive a terminal
 * or a log that shows the name raw.
 */
export const CONTROL_CHAR: RegExp = new RegExp(`[${C0}${DEL_AND_C1}]`);

/**
 * Runs of control characters, for replacing each run with one space: what a peer's error message
 * loses, so that it is one line. Its bidi characters and separators stay, and are escaped where
 * it is shown, so that a user sees they were there.
 */
export const CONTROL_RUNS: RegExp = new RegExp(`[${C0}${DEL_AND_C1}]+`, "g");

/**
 * A bidi embedding, override or isolate. A name holding one is refused: it reorders the rest of
 * the line, so a name could pass for another in a listing or a log. The bidi marks and the line
 * separators, which do not reach beyond themselves, are allowed in names (names copied from
 * right-to-left text carry marks) and escaped wherever a name is shown.
 */
export const BIDI_CONTROL: RegExp = new RegExp(`[${BIDI_CONTROLS}]`);
