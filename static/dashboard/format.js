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
