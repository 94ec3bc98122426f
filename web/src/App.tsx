import { useEffect, useRef, useState } from 'react'
import { Card } from './components/Card'
import { ConfigPanel } from './components/ConfigPanel'
import { ConnectionIndicator } from './components/ConnectionIndicator'
import { ConsumerBars } from './components/ConsumerBars'
import { LatencyPanel } from './components/LatencyPanel'
import { RedisBanner } from './components/RedisBanner'
import { StatusPanel } from './components/StatusPanel'
import { RateChart } from './components/RateChart'
import { TokenForm } from './components/TokenForm'
import { useDashboard } from './hooks/useDashboard'
import { startTest, stopTest } from './lib/api'
import { formatPercent } from './lib/format'
import { clearToken, loadToken, saveToken } from './lib/token'
import {
  CONFIG_FIELDS,
  type ConfigField,
  type FieldErrors,
  defaultInput,
  fromConfig,
  isConfigField,
  validateConfig,
  validateField,
} from './lib/validation'

type Action = 'start' | 'stop'

const PAGE_TITLE = 'Expiry pipeline — test console'

function withError(errors: FieldErrors, field: ConfigField, message: string | null): FieldErrors {
  const next = { ...errors }
  if (message) next[field] = message
  else delete next[field]
  return next
}

function focusField(field: ConfigField) {
  document.getElementById(`field-${field}`)?.focus()
}

export function App() {
  const { status, series, connection, load, firstStatus, refresh } = useDashboard()
  const [form, setForm] = useState(defaultInput)
  const [errors, setErrors] = useState<FieldErrors>({})
  const [formError, setFormError] = useState<string | null>(null)
  const [pending, setPending] = useState<Action | null>(null)
  const [tokenPrompt, setTokenPrompt] = useState<{ action: Action; rejected: boolean } | null>(null)
  const [stopRequestedFor, setStopRequestedFor] = useState<string | null>(null)

  // A reloaded page offers the last test's parameters rather than the defaults, unless the
  // person has already put the cursor in a field or pressed Start. They are shown in the same
  // update that shows the first status, never written a moment later: a value rewritten
  // between a field's select-all and the typing that replaces it drops the selection, and the
  // typed text is appended to the old value. The form takes them over at the first touch.
  const edited = useRef(false)
  const lastConfig = firstStatus?.config ?? null
  const formShown = edited.current || !lastConfig ? form : fromConfig(lastConfig)
  const takeOver = () => {
    if (edited.current) return
    edited.current = true
    if (lastConfig) setForm(fromConfig(lastConfig))
  }

  const running = status?.is_running ?? false

  // The tab's title carries the progress, so a test can be followed from another tab.
  useEffect(() => {
    document.title = running && status ? `${formatPercent(status.progress)} · ${PAGE_TITLE}` : PAGE_TITLE
  }, [running, status])
  const canStart = load !== 'loading' && !running && pending === null
  const canStop =
    running && pending === null && (stopRequestedFor === null || stopRequestedFor !== status?.test_id)

  const onChange = (field: ConfigField, text: string) => {
    takeOver()
    setForm((previous) => ({ ...previous, [field]: text }))
    // Once a field shows an error, re-check it as the person types so it clears when fixed.
    setErrors((previous) => (previous[field] ? withError(previous, field, validateField(field, text)) : previous))
  }

  const onFocus = takeOver

  const onBlur = (field: ConfigField) => {
    setErrors((previous) => withError(previous, field, validateField(field, formShown[field])))
  }

  async function perform(action: Action, token: string | null = loadToken()) {
    setFormError(null)
    let config = null
    if (action === 'start') {
      takeOver()
      const checked = validateConfig(formShown)
      if (!checked.ok) {
        setErrors(checked.errors)
        const first = CONFIG_FIELDS.find((field) => checked.errors[field])
        if (first) focusField(first)
        return
      }
      setErrors({})
      config = checked.config
    }
    setPending(action)
    try {
      const result = config ? await startTest(config, token) : await stopTest(token)
      if (result.kind === 'unauthorized') {
        if (token) clearToken()
        setTokenPrompt({ action, rejected: token !== null })
        return
      }
      setTokenPrompt(null)
      if (result.kind === 'error') {
        const field = result.field
        if (isConfigField(field)) {
          setErrors((previous) => withError(previous, field, result.message))
          focusField(field)
        } else {
          setFormError(result.message)
        }
        if (result.status === 409) await refresh().catch(() => undefined)
        return
      }
      if (action === 'stop') {
        const testId = result.body.test_id
        setStopRequestedFor(typeof testId === 'string' ? testId : (status?.test_id ?? null))
      }
      await refresh().catch(() => undefined)
    } finally {
      setPending(null)
    }
  }

  const shownValues = running && status?.config ? fromConfig(status.config) : formShown

  return (
    <div className="mx-auto max-w-7xl px-3 py-4 sm:px-6 sm:py-6">
      <header className="mb-5 flex flex-wrap items-center justify-between gap-3">
        <div>
          <h1 className="text-2xl font-bold tracking-tight text-slate-900">Expiry pipeline</h1>
          <p className="text-sm text-slate-600">Exactly-once processing of Redis key expirations — test console</p>
        </div>
        <ConnectionIndicator connection={connection} />
      </header>

      <main className="grid grid-cols-1 gap-5 lg:grid-cols-[minmax(18rem,22rem)_minmax(0,1fr)]">
        <div className="space-y-5 lg:sticky lg:top-4 lg:self-start">
          <Card title="Test configuration" id="config-title" testId="config-panel">
            <ConfigPanel
              values={shownValues}
              errors={errors}
              formError={formError}
              locked={running}
              canStart={canStart}
              canStop={canStop}
              pending={pending}
              onChange={onChange}
              onFocus={onFocus}
              onBlur={onBlur}
              onStart={() => void perform('start')}
              onStop={() => void perform('stop')}
            />
            {tokenPrompt && (
              <TokenForm
                key={`${tokenPrompt.action}-${tokenPrompt.rejected}`}
                action={tokenPrompt.action}
                rejected={tokenPrompt.rejected}
                onSubmit={(token) => {
                  saveToken(token)
                  void perform(tokenPrompt.action, loadToken())
                }}
                onCancel={() => setTokenPrompt(null)}
              />
            )}
          </Card>
        </div>

        <div className="min-w-0 space-y-5">
          <RedisBanner problem={status?.redis_problem ?? null} now={Date.now() / 1000} />
          <StatusPanel status={status} load={load} connection={connection} />
          <Card title="Keys per second" id="chart-title">
            <RateChart samples={series.samples} />
          </Card>
          <div className="grid grid-cols-1 gap-5 md:grid-cols-2">
            <Card title="Keys per consumer" id="consumers-title" testId="consumers">
              <ConsumerBars consumers={status?.consumers ?? {}} listeners={status?.listeners ?? []} />
            </Card>
            <Card title="Delay after TTL deadline" id="latency-title" testId="latency">
              <LatencyPanel latency={status?.latency_ms ?? null} />
            </Card>
          </div>
        </div>
      </main>
    </div>
  )
}
