"""Goal-driven search (docs/architecture.md, goal-driven search): from "the fastest model within
one point of accuracy" to the recipe that gets there, within a time budget."""
