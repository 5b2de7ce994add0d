/**
 * The CLI's one sanitizer for text it prints: module descriptions, reasons, actors, labels,
 * verifier logs and error messages come from other people and machines, and a terminal
 * obeys escape sequences (moving the cursor, rewriting earlier lines, setting the window
 * title, OSC 52 writing the clipboard). Every C0 control but tab and newline, DEL and every
 * C1 control (U+0080-U+009F, which some terminals read as CSI/OSC) is shown as a visible
 * `\xNN` instead.
 */
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `text` with every terminal control character made visible (see the module comment). */
export function inert(text: string): string {
  return text.replace(CONTROL_RE, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
