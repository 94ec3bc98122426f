import { describe, expect, it } from 'vitest'
import { defaultInput, FIELD_RULES, isConfigField, validateConfig, validateField } from './validation'

describe('defaults', () => {
  it('match the server defaults', () => {
    expect(validateConfig(defaultInput())).toEqual({
      ok: true,
      config: { num_keys: 1000, key_delay: 1, key_ttl: 100, dedup_window: 5000 },
    })
  })
})

describe('validateField', () => {
  it.each([
    ['num_keys', '1'],
    ['num_keys', '1000000'],
    ['key_delay', '0'],
    ['key_delay', '60000'],
    ['key_ttl', '3600000'],
    ['dedup_window', '86400000'],
    ['num_keys', ' 42 '],
  ] as const)('accepts %s = %j', (field, text) => {
    expect(validateField(field, text)).toBeNull()
  })

  it.each([
    ['num_keys', '0'],
    ['num_keys', '-5'],
    ['num_keys', '1000001'],
    ['key_delay', '-1'],
    ['key_delay', '60001'],
    ['key_ttl', '0'],
    ['key_ttl', '3600001'],
    ['dedup_window', '0'],
    ['dedup_window', '86400001'],
  ] as const)('rejects out-of-range %s = %j', (field, text) => {
    expect(validateField(field, text)).toMatch(/^Must be from/)
  })

  it.each(['', '  ', '1.5', '1e3', 'abc', '0x10', '12 3', 'true'])('rejects non-integer %j', (text) => {
    expect(validateField('num_keys', text)).not.toBeNull()
  })

  it('names the allowed range and unit', () => {
    expect(validateField('key_ttl', '0')).toBe('Must be from 1 to 3,600,000 ms.')
    expect(validateField('num_keys', 'x')).toBe('Must be a whole number (1 to 1,000,000).')
    expect(validateField('key_delay', '')).toBe('Enter a whole number from 0 to 60,000.')
  })
})

describe('validateConfig', () => {
  it('reports every bad field at once', () => {
    const result = validateConfig({ num_keys: '-5', key_delay: '1', key_ttl: 'x', dedup_window: '5000' })
    expect(result.ok).toBe(false)
    if (!result.ok) expect(Object.keys(result.errors).sort()).toEqual(['key_ttl', 'num_keys'])
  })

  it('sends integers, not strings', () => {
    const result = validateConfig({ num_keys: '+300', key_delay: '007', key_ttl: '100', dedup_window: '5000' })
    expect(result).toEqual({
      ok: true,
      config: { num_keys: 300, key_delay: 7, key_ttl: 100, dedup_window: 5000 },
    })
  })
})

describe('rules', () => {
  it('cover the four fields the server takes', () => {
    expect(FIELD_RULES.map((rule) => rule.field)).toEqual(['num_keys', 'key_delay', 'key_ttl', 'dedup_window'])
  })

  it('recognise field names from server errors', () => {
    expect(isConfigField('key_ttl')).toBe(true)
    expect(isConfigField('bogus')).toBe(false)
    expect(isConfigField(undefined)).toBe(false)
  })
})
