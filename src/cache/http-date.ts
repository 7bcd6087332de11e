/** HTTP-date parsing and formatting (RFC 9110 §5.6.7), with the cache's leniencies from RFC 9111 §4.2. */

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

// RFC 9110 §5.6.7: IMF-fixdate, the preferred form ("Sun, 06 Nov 1994 08:49:37 GMT").
const IMF_FIXDATE = /^(?:mon|tue|wed|thu|fri|sat|sun), (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) gmt$/i;
// RFC 9110 §5.6.7: obsolete rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT").
const RFC850_DATE = /^(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) gmt$/i;
// RFC 9110 §5.6.7: obsolete asctime-date ("Sun Nov  6 08:49:37 1994"); the day is space-padded.
const ASCTIME_DATE = /^(?:mon|tue|wed|thu|fri|sat|sun) ([a-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i;

/**
 * parseHttpDate reads an HTTP-date into epoch milliseconds, or undefined when it is not one: a few regex
 * tests, no allocation beyond the match. Month and weekday names match case-insensitively and a zone other
 * than GMT is invalid (RFC 9111 §4.2); the weekday is required but not checked against the date. A two-digit
 * rfc850 year more than 50 years after `now`'s year is read as the previous century (RFC 9110 §5.6.7).
 */
export function parseHttpDate(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const s = value.trim();
  let m = IMF_FIXDATE.exec(s);
  if (m) return build(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  m = RFC850_DATE.exec(s);
  if (m) {
    const current = new Date(now).getUTCFullYear();
    let year = current - (current % 100) + Number(m[3]);
    if (year > current + 50) year -= 100;
    return build(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  }
  m = ASCTIME_DATE.exec(s);
  if (m) return build(Number(m[6]), m[1]!, Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!);
  return undefined;
}

function build(year: number, monthName: string, day: number, hh: string, mm: string, ss: string): number | undefined {
  const month = MONTHS.indexOf(monthName.toLowerCase());
  const hour = Number(hh);
  const minute = Number(mm);
  // RFC 9111 §4.2: a time finer than ours is represented by the nearest earlier one, so a leap second 60 reads as 59.
  const second = Math.min(Number(ss), 59);
  if (month < 0 || hour > 23 || minute > 59 || Number(ss) > 60 || year < 1000) return undefined;
  const t = Date.UTC(year, month, day, hour, minute, second);
  // Date.UTC rolls "31 Feb" over into March: such a date is not a date.
  return new Date(t).getUTCDate() === day ? t : undefined;
}

/** formatHttpDate writes epoch milliseconds as an IMF-fixdate (RFC 9110 §5.6.7), dropping the milliseconds. */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
