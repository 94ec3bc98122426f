import { useEffect, useRef, useState } from 'react'
import { polylinePoints, thin, timeTicks, valueTicks } from '../lib/chart'
import { formatAxisTime, formatCompact, formatCount, formatElapsed } from '../lib/format'
import type { RateSample } from '../lib/types'

const HEIGHT = 220
const PAD = { top: 10, right: 12, bottom: 28, left: 52 }

const GENERATION = { stroke: '#0284c7', label: 'Generation', swatch: 'bg-sky-600' }
const CONSUMPTION = { stroke: '#ea580c', label: 'Consumption', swatch: 'bg-orange-600' }

function useWidth(fallback: number) {
  const ref = useRef<HTMLDivElement>(null)
  const [width, setWidth] = useState(fallback)
  useEffect(() => {
    const element = ref.current
    if (!element || typeof ResizeObserver === 'undefined') return
    const observer = new ResizeObserver(([entry]) => {
      if (entry) setWidth(Math.max(240, Math.floor(entry.contentRect.width)))
    })
    observer.observe(element)
    return () => observer.disconnect()
  }, [])
  return { ref, width }
}

export function RateChart({ samples }: { samples: RateSample[] }) {
  const { ref, width } = useWidth(640)
  const plotWidth = width - PAD.left - PAD.right
  const plotHeight = HEIGHT - PAD.top - PAD.bottom
  const shown = thin(samples, Math.max(2, Math.floor(plotWidth / 2)))
  const peakGeneration = Math.max(0, ...samples.map((s) => s.generation_rate))
  const peakConsumption = Math.max(0, ...samples.map((s) => s.consumption_rate))
  const xTicks = timeTicks(samples.at(-1)?.t ?? 0, width < 480 ? 3 : 6)
  const yTicks = valueTicks(Math.max(peakGeneration, peakConsumption))
  const frame = {
    width: plotWidth,
    height: plotHeight,
    maxT: xTicks.at(-1) ?? 1,
    maxRate: yTicks.at(-1) ?? 1,
  }
  const description =
    samples.length === 0
      ? 'No samples yet.'
      : `Keys per second over ${formatElapsed(samples.at(-1)?.t ?? 0)}: generation peaked at ${formatCount(
          peakGeneration,
        )}, consumption at ${formatCount(peakConsumption)}.`

  return (
    <div ref={ref} data-testid="rate-chart" data-samples={samples.length}>
      <ul className="mb-2 flex flex-wrap gap-4 text-sm text-slate-700">
        {[GENERATION, CONSUMPTION].map((line) => (
          <li key={line.label} className="flex items-center gap-2">
            <span aria-hidden="true" className={`h-1 w-5 rounded ${line.swatch}`} />
            {line.label}
          </li>
        ))}
      </ul>
      <svg
        role="img"
        aria-label={description}
        width={width}
        height={HEIGHT}
        viewBox={`0 0 ${width} ${HEIGHT}`}
        className="block max-w-full"
      >
        <g transform={`translate(${PAD.left},${PAD.top})`}>
          {yTicks.map((value) => {
            const y = plotHeight - (value / frame.maxRate) * plotHeight
            return (
              <g key={`y${value}`}>
                <line x1={0} x2={plotWidth} y1={y} y2={y} stroke="#e2e8f0" />
                <text x={-8} y={y} dy="0.32em" textAnchor="end" fontSize={11} fill="#475569">
                  {formatCompact(value)}
                </text>
              </g>
            )
          })}
          {xTicks.map((value) => {
            const x = (value / frame.maxT) * plotWidth
            return (
              <text key={`x${value}`} x={x} y={plotHeight + 18} textAnchor="middle" fontSize={11} fill="#475569">
                {formatAxisTime(value)}
              </text>
            )
          })}
          <line x1={0} x2={plotWidth} y1={plotHeight} y2={plotHeight} stroke="#94a3b8" />
          {shown.length > 0 && (
            <>
              <polyline
                data-testid="generation-line"
                points={polylinePoints(shown, (s) => s.generation_rate, frame)}
                fill="none"
                stroke={GENERATION.stroke}
                strokeWidth={2}
                strokeLinejoin="round"
              />
              <polyline
                data-testid="consumption-line"
                points={polylinePoints(shown, (s) => s.consumption_rate, frame)}
                fill="none"
                stroke={CONSUMPTION.stroke}
                strokeWidth={2}
                strokeLinejoin="round"
                strokeDasharray="5 3"
              />
            </>
          )}
          {shown.length === 0 && (
            <text x={plotWidth / 2} y={plotHeight / 2} textAnchor="middle" fontSize={13} fill="#64748b">
              Rates appear here once a test runs
            </text>
          )}
        </g>
        <text
          transform={`translate(12,${PAD.top + plotHeight / 2}) rotate(-90)`}
          textAnchor="middle"
          fontSize={11}
          fill="#475569"
        >
          keys/s
        </text>
      </svg>
    </div>
  )
}
