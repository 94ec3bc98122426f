import type { ReactNode } from 'react'

interface CardProps {
  title: string
  id: string
  aside?: ReactNode
  children: ReactNode
  testId?: string
}

export function Card({ title, id, aside, children, testId }: CardProps) {
  return (
    <section
      aria-labelledby={id}
      data-testid={testId}
      className="rounded-xl border border-slate-200 bg-white p-4 shadow-sm sm:p-5"
    >
      <div className="mb-3 flex flex-wrap items-baseline justify-between gap-2">
        <h2 id={id} className="text-base font-semibold text-slate-800">
          {title}
        </h2>
        {aside}
      </div>
      {children}
    </section>
  )
}
