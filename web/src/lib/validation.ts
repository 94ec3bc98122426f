import type { TestConfig } from './types'

export type ConfigField = keyof TestConfig

export interface FieldRule {
  field: ConfigField
  label: string
  unit: string
  min: number
  max: number
  defaultValue: number
  help: string
}

/** The server's rules for POST /api/start (docs/API.md), in the order the form shows them. */
export const FIELD_RULES: readonly FieldRule[] = [
  {
    field: 'num_keys',
    label: 'Number of keys',
    unit: 'keys',
    min: 1,
    max: 1_000_000,
    defaultValue: 1000,
    help: 'gen-key:0 … gen-key:N-1',
  },
  {
    field: 'key_delay',
    label: 'Delay per key',
    unit: 'ms',
    min: 0,
    max: 60_000,
    defaultValue: 1,
    help: '0 writes as fast as possible',
  },
  {
    field: 'key_ttl',
    label: 'Key TTL',
    unit: 'ms',
    min: 1,
    max: 3_600_000,
    defaultValue: 100,
    help: 'time until each key expires',
  },
  {
    field: 'dedup_window',
    label: 'Dedup window',
    unit: 'ms',
    min: 1,
    max: 86_400_000,
    defaultValue: 5000,
    help: 'memory of consumed keys',
  },
]

export const CONFIG_FIELDS: readonly ConfigField[] = FIELD_RULES.map((rule) => rule.field)

export type ConfigInput = Record<ConfigField, string>
export type FieldErrors = Partial<Record<ConfigField, string>>

export function ruleFor(field: ConfigField): FieldRule {
  const rule = FIELD_RULES.find((candidate) => candidate.field === field)
  if (!rule) throw new Error(`no rule for ${field}`)
  return rule
}

export function defaultInput(): ConfigInput {
  return fromConfig({ num_keys: 1000, key_delay: 1, key_ttl: 100, dedup_window: 5000 })
}

export function fromConfig(config: TestConfig): ConfigInput {
  return {
    num_keys: String(config.num_keys),
    key_delay: String(config.key_delay),
    key_ttl: String(config.key_ttl),
    dedup_window: String(config.dedup_window),
  }
}

const INTEGER = /^[+-]?\d+$/

/** Checks one field's text; returns the message to show, or null when it is valid. */
export function validateField(field: ConfigField, text: string): string | null {
  const rule = ruleFor(field)
  const trimmed = text.trim()
  const range = `${rule.min.toLocaleString('en-US')} to ${rule.max.toLocaleString('en-US')}`
  if (trimmed === '') return `Enter a whole number from ${range}.`
  if (!INTEGER.test(trimmed)) return `Must be a whole number (${range}).`
  const value = Number(trimmed)
  if (value < rule.min || value > rule.max) return `Must be from ${range} ${rule.unit}.`
  return null
}

export type ValidationResult =
  | { ok: true; config: TestConfig }
  | { ok: false; errors: FieldErrors }

/** Validates the whole form the way the server will, so most mistakes never leave the page. */
export function validateConfig(input: ConfigInput): ValidationResult {
  const errors: FieldErrors = {}
  for (const field of CONFIG_FIELDS) {
    const message = validateField(field, input[field])
    if (message) errors[field] = message
  }
  if (Object.keys(errors).length > 0) return { ok: false, errors }
  return {
    ok: true,
    config: {
      num_keys: Number(input.num_keys.trim()),
      key_delay: Number(input.key_delay.trim()),
      key_ttl: Number(input.key_ttl.trim()),
      dedup_window: Number(input.dedup_window.trim()),
    },
  }
}

export function isConfigField(name: unknown): name is ConfigField {
  return typeof name === 'string' && (CONFIG_FIELDS as readonly string[]).includes(name)
}
