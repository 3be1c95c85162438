// Numbers, counts and sentences as the page writes them.

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const pluralRules = new Intl.PluralRules("en-US");

/** A whole number with thousands separators: 15204383 -> "15,204,383". */
export const formatInteger = (value) => integer.format(value);

/** A count and its noun, singular or plural: (1, "step") -> "1 step", (2, "step") -> "2 steps". */
export function count(value, singular, plural = `${singular}s`) {
  return `${integer.format(value)} ${pluralRules.select(value) === "one" ? singular : plural}`;
}

/** The verb that goes with a count: (1, "changes", "change") -> "changes". */
export const agree = (value, singular, plural) =>
  (pluralRules.select(value) === "one" ? singular : plural);

/** Milliseconds as people read them: "17 ms", "1.14 s". */
export const formatMs = (ms) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`);

/** A message as a sentence: a capital first letter and a full stop. */
export function sentence(text) {
  const trimmed = String(text).trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

/** Bytes as people read them: "3.21 GiB", "42 MiB". */
export function formatBytes(bytes) {
  if (bytes >= GIB / 10) return `${(bytes / GIB).toFixed(bytes >= 100 * GIB ? 0 : 2)} GiB`;
  if (bytes >= MIB) return `${(bytes / MIB).toFixed(bytes >= 100 * MIB ? 0 : 1)} MiB`;
  return count(bytes, "byte");
}

/** A share of 1 as a percentage: 0.1 -> "10%", 0.125 -> "12.5%". */
export const formatShare = (share) => `${Number((share * 100).toFixed(2))}%`;
