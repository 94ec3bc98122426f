import { useEffect, useRef, useState, type FormEvent } from 'react'

interface TokenFormProps {
  action: 'start' | 'stop'
  rejected: boolean
  onSubmit: (token: string) => void
  onCancel: () => void
}

/** Asked once, when the generator answers 401: the token is then kept for this tab. */
export function TokenForm({ action, rejected, onSubmit, onCancel }: TokenFormProps) {
  const [token, setToken] = useState('')
  const input = useRef<HTMLInputElement>(null)
  useEffect(() => input.current?.focus(), [])
  const submit = (event: FormEvent) => {
    event.preventDefault()
    if (token.trim()) onSubmit(token)
  }
  return (
    <form
      onSubmit={submit}
      data-testid="token-form"
      role="dialog"
      aria-modal="false"
      aria-labelledby="token-title"
      aria-describedby="token-help"
      className="mt-4 rounded-lg border border-amber-300 bg-amber-50 p-3"
      onKeyDown={(event) => {
        if (event.key === 'Escape') onCancel()
      }}
    >
      <h3 id="token-title" className="font-semibold text-amber-900">
        API token needed
      </h3>
      <p id="token-help" className="mb-2 text-sm text-amber-900">
        {rejected
          ? 'The generator rejected that token. Enter the current API_TOKEN.'
          : `The generator asks for its API token to ${action} a test. It is kept only in this tab.`}
      </p>
      <label htmlFor="api-token" className="mb-1 block text-sm font-medium text-slate-700">
        API token
      </label>
      <div className="flex flex-wrap gap-2">
        <input
          ref={input}
          id="api-token"
          data-testid="token-input"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(event) => setToken(event.target.value)}
          className="min-w-0 flex-1 rounded-lg border border-slate-300 bg-white px-3 py-2 outline-none focus:border-sky-600 focus:ring-2 focus:ring-sky-200"
        />
        <button
          type="submit"
          data-testid="token-submit"
          disabled={!token.trim()}
          className="rounded-lg bg-sky-700 px-3 py-2 font-semibold text-white hover:bg-sky-800 focus-visible:ring-2 focus-visible:ring-sky-400 focus-visible:outline-none disabled:bg-slate-300 disabled:text-slate-600"
        >
          Save and {action}
        </button>
        <button
          type="button"
          onClick={onCancel}
          className="rounded-lg border border-slate-300 bg-white px-3 py-2 text-slate-700 hover:bg-slate-50 focus-visible:ring-2 focus-visible:ring-sky-400 focus-visible:outline-none"
        >
          Cancel
        </button>
      </div>
    </form>
  )
}
