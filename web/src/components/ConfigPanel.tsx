import type { FormEvent } from 'react'
import { formatMs, generationEstimate } from '../lib/format'
import {
  FIELD_RULES,
  type ConfigField,
  type ConfigInput,
  type FieldErrors,
  validateConfig,
} from '../lib/validation'

interface ConfigPanelProps {
  values: ConfigInput
  errors: FieldErrors
  formError: string | null
  locked: boolean
  canStart: boolean
  canStop: boolean
  pending: 'start' | 'stop' | null
  onChange: (field: ConfigField, text: string) => void
  onFocus: () => void
  onBlur: (field: ConfigField) => void
  onStart: () => void
  onStop: () => void
}

function readable(field: ConfigField, text: string): string | null {
  const value = Number(text.trim())
  if (field === 'num_keys' || !Number.isInteger(value) || value < 1000) return null
  return formatMs(value)
}

export function ConfigPanel(props: ConfigPanelProps) {
  const { values, errors, formError, locked, canStart, canStop, pending } = props
  const submit = (event: FormEvent) => {
    event.preventDefault()
    if (canStart) props.onStart()
  }
  const valid = validateConfig(values)
  return (
    <form noValidate onSubmit={submit} aria-describedby={formError ? 'form-error' : undefined}>
      <fieldset disabled={locked} className="grid grid-cols-1 gap-x-4 gap-y-2 sm:grid-cols-2 lg:grid-cols-1">
        <legend className="sr-only">Test parameters</legend>
        {FIELD_RULES.map((rule) => {
          const id = `field-${rule.field}`
          const error = errors[rule.field]
          const conversion = readable(rule.field, values[rule.field])
          return (
            <div key={rule.field}>
              <div className="mb-1 flex items-baseline justify-between gap-2">
                <label htmlFor={id} className="text-sm font-medium text-slate-700">
                  {rule.label}
                  {rule.unit === 'ms' && <span className="sr-only"> in milliseconds</span>}
                </label>
                {conversion && (
                  <span className="text-xs text-slate-500 tabular-nums" data-testid={`readable-${rule.field}`}>
                    {conversion}
                  </span>
                )}
              </div>
              <div
                className={`flex rounded-lg border bg-white focus-within:ring-2 ${
                  error
                    ? 'border-red-500 focus-within:ring-red-300'
                    : 'border-slate-300 focus-within:border-sky-600 focus-within:ring-sky-200'
                } ${locked ? 'bg-slate-100' : ''}`}
              >
                <input
                  id={id}
                  name={rule.field}
                  data-testid={`input-${rule.field}`}
                  type="text"
                  inputMode="numeric"
                  autoComplete="off"
                  spellCheck={false}
                  value={values[rule.field]}
                  onChange={(event) => props.onChange(rule.field, event.target.value)}
                  onFocus={props.onFocus}
                  onBlur={() => props.onBlur(rule.field)}
                  aria-invalid={error ? true : undefined}
                  aria-describedby={error ? `${id}-error` : `${id}-help`}
                  className="w-full min-w-0 rounded-l-lg bg-transparent px-3 py-2 font-mono tabular-nums outline-none disabled:text-slate-500"
                />
                <span
                  aria-hidden="true"
                  className="flex items-center rounded-r-lg border-l border-slate-200 bg-slate-50 px-3 text-sm text-slate-500"
                >
                  {rule.unit}
                </span>
              </div>
              {/* Help and error share one fixed-height slot: a message appearing on blur must not
                  move the Start button between the press and the release of a click. */}
              <div className="mt-1 min-h-8 text-xs leading-4">
                {error ? (
                  <p id={`${id}-error`} data-testid={`error-${rule.field}`} className="font-medium text-red-700">
                    {error}
                  </p>
                ) : (
                  <p id={`${id}-help`} className="text-slate-500">
                    {rule.min.toLocaleString('en-US')}–{rule.max.toLocaleString('en-US')} · {rule.help}
                  </p>
                )}
              </div>
            </div>
          )
        })}
      </fieldset>
      <p className="mt-1 min-h-4 text-xs leading-4 text-slate-600" data-testid="estimate">
        {valid.ok &&
          `${valid.config.num_keys.toLocaleString('en-US')} keys, ${generationEstimate(
            valid.config.num_keys,
            valid.config.key_delay,
          )}.`}
      </p>
      <div className="mt-3 flex gap-3">
        <button
          type="submit"
          data-testid="start"
          disabled={!canStart}
          className="flex-1 rounded-lg bg-sky-700 px-4 py-2.5 font-semibold text-white shadow-sm hover:bg-sky-800 focus-visible:ring-2 focus-visible:ring-sky-400 focus-visible:ring-offset-2 focus-visible:outline-none disabled:cursor-not-allowed disabled:bg-slate-300 disabled:text-slate-600"
        >
          {pending === 'start' ? 'Starting…' : 'Start test'}
        </button>
        <button
          type="button"
          data-testid="stop"
          disabled={!canStop}
          onClick={props.onStop}
          className="flex-1 rounded-lg border border-red-300 bg-white px-4 py-2.5 font-semibold text-red-700 shadow-sm hover:bg-red-50 focus-visible:ring-2 focus-visible:ring-red-400 focus-visible:ring-offset-2 focus-visible:outline-none disabled:cursor-not-allowed disabled:border-slate-200 disabled:text-slate-400 disabled:hover:bg-white"
        >
          {pending === 'stop' ? 'Stopping…' : 'Stop'}
        </button>
      </div>
      {formError && (
        <p
          id="form-error"
          role="alert"
          data-testid="form-error"
          className="mt-3 rounded-lg border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800"
        >
          {formError}
        </p>
      )}
    </form>
  )
}
