// The API token lives in sessionStorage: it survives a reload of this tab, not the tab itself.

export const TOKEN_STORAGE_KEY = 'expiry-pipeline.api-token'

function storage(): Storage | null {
  try {
    return window.sessionStorage
  } catch {
    // Storage can be disabled (privacy settings); the token then lasts until reload.
    return null
  }
}

let memoryToken: string | null = null

export function loadToken(): string | null {
  const stored = storage()?.getItem(TOKEN_STORAGE_KEY)
  return stored ?? memoryToken
}

export function saveToken(token: string): void {
  const trimmed = token.trim()
  memoryToken = trimmed
  storage()?.setItem(TOKEN_STORAGE_KEY, trimmed)
}

export function clearToken(): void {
  memoryToken = null
  storage()?.removeItem(TOKEN_STORAGE_KEY)
}

export function authHeaders(token: string | null): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {}
}
