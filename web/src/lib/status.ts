import type { Status } from './types'

/**
 * True when `incoming` describes an earlier moment of the same test than `current`: a slow
 * /api/status answer can land after a newer pushed event and must not move the page back.
 */
export function isStale(incoming: Status, current: Status | null): boolean {
  if (!current || incoming.test_id !== current.test_id) return false
  return incoming.elapsed_s < current.elapsed_s
}
